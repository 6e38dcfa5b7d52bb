"""--optimizer (timm's factory) and --schedule cosine with --warmup-epochs."""
import pytest
import torch

from pipeline.config import TrainConfig
from pipeline.experiments import list_runs
from pipeline.errors import PipelineError
from pipeline.run import load_checkpoint
from pipeline.train import optimizer_and_schedule, resume, train
from tests.fixtures import QUICK

EXPECTED = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "lamb", "lion"])
def test_each_optimizer_steps_and_decays_every_parameter(name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3))  # every parameter gets a gradient
    config = TrainConfig(optimizer=name, lr=0.1, weight_decay=0.01)
    optimizer, _, _ = optimizer_and_schedule(config, model, torch.device("cpu"), 5)
    assert isinstance(optimizer, EXPECTED.get(name, torch.optim.Optimizer)) and name in type(optimizer).__name__.lower()
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01]  # one group: as resumed states expect
    on_cuda, _, _ = optimizer_and_schedule(TrainConfig(optimizer=name), model, torch.device("cuda"), 5)  # built only
    assert on_cuda.param_groups[0].get("fused") is (True if name in EXPECTED else None)  # torch's fused kernels
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(8, 4)).square().mean().backward()
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_sgd_takes_nesterov_and_the_others_refuse_it():
    model = torch.nn.Linear(2, 2)
    for nesterov in (False, True):
        optimizer, _, _ = optimizer_and_schedule(TrainConfig(nesterov=nesterov), model, torch.device("cpu"), 1)
        assert optimizer.param_groups[0]["nesterov"] is nesterov and optimizer.param_groups[0]["momentum"] == 0.9
    with pytest.raises(PipelineError, match="--nesterov is SGD's; --optimizer adamw has its own momentum: pass --no-nest"):
        TrainConfig(optimizer="adamw", nesterov=True).validate()
    with pytest.raises(PipelineError, match="--nesterov needs a --momentum above 0"):
        TrainConfig(nesterov=True, momentum=0.0).validate()
    for name, second in (("adam", 0.999), ("lion", 0.99)):  # --momentum is the Adam family's first beta
        optimizer, _, _ = optimizer_and_schedule(TrainConfig(optimizer=name, momentum=0.5), model, torch.device("cpu"), 1)
        assert optimizer.param_groups[0]["betas"] == (0.5, second)


def test_a_recipes_nesterov_gives_way_to_another_optimizer_but_a_typed_one_is_refused():
    from pipeline.config import config_from
    for recipe in ("fastnet", "fast"):  # both train with Nesterov SGD
        assert config_from({"recipe": recipe, "optimizer": "adamw"}).nesterov is False
    with pytest.raises(PipelineError, match="--nesterov is SGD's"):
        config_from({"optimizer": "adamw", "nesterov": True}).validate()


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step", "triangle"])
def test_norm_bias_lr_gives_normalisation_biases_their_own_lr_with_the_same_decay_per_step(schedule):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.LayerNorm(16), torch.nn.Linear(16, 2))
    config = TrainConfig(lr=0.5, weight_decay=0.01, norm_bias_lr=64, schedule=schedule, epochs=2)
    optimizer, scheduler, _ = optimizer_and_schedule(config, model, torch.device("cpu"), steps_per_epoch=10)
    others, biases = optimizer.param_groups
    assert [id(p) for p in biases["params"]] == [id(model[1].bias), id(model[3].bias)]
    assert len(others["params"]) == 6  # the conv's, the linear's and the norms' weights
    peak = 0.0
    for _ in range(20):
        peak = max(peak, others["lr"])
        assert biases["lr"] == pytest.approx(64 * others["lr"])
        assert biases["lr"] * biases["weight_decay"] == pytest.approx(others["lr"] * others["weight_decay"])
        optimizer.step()
        scheduler.step()
    assert peak == pytest.approx(0.5, rel=0.03)  # --lr stays the other parameters' (peak) rate (triangle: near it)
    one_group, _, _ = optimizer_and_schedule(TrainConfig(), model, torch.device("cpu"), 10)
    assert len(one_group.param_groups) == 1  # the default: one group, as resumed optimizer states expect
    with pytest.raises(PipelineError, match="--norm-bias-lr 0: must be a finite number > 0"):
        TrainConfig(norm_bias_lr=0).validate()


def test_cosine_warms_up_linearly_then_decays_to_zero_per_step():
    model = torch.nn.Linear(2, 2)
    config = TrainConfig(schedule="cosine", warmup_epochs=1, epochs=3, lr=1.0)
    optimizer, scheduler, per_step = optimizer_and_schedule(config, model, torch.device("cpu"), steps_per_epoch=10)
    lrs = []
    for _ in range(30):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert per_step and lrs[0] == pytest.approx(0.01) and lrs[10] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # the warm-up rises every step
    assert all(a > b for a, b in zip(lrs[10:29], lrs[11:30])) and lrs[29] < 0.01  # then falls towards 0
    for bad, message in ((dict(warmup_epochs=2), "--warmup-epochs needs --schedule cosine"),
                         (dict(schedule="cosine", warmup_epochs=5, epochs=5), r"fewer than --epochs 5")):
        with pytest.raises(PipelineError, match=message):
            TrainConfig(**bad).validate()


def test_an_adamw_cosine_run_trains_and_its_schedule_cannot_be_stretched_on_resume(fetched):
    options = {**QUICK, **dict(epochs=2, limit=64, optimizer="adamw", lr=0.003, schedule="cosine", warmup_epochs=0.5)}
    straight = train(TrainConfig(**options, name="straight")).run_dir
    halted = train(TrainConfig(**{**options, "epochs": 1}, name="halted")).run_dir
    with pytest.raises(PipelineError, match="finished its cosine schedule, which spans its epochs; to train longer, start"):
        resume(halted, {"epochs": 2})
    assert list_runs().set_index("run").loc["straight", "schedule"] == "cosine, warm-up 0.5"
    expected = load_checkpoint(straight / "last.pt")
    assert expected["optimizer"]["param_groups"][0]["lr"] < 0.003 and "exp_avg" in expected["optimizer"]["state"][0]


def test_triangle_is_airbench94s_linear_schedule_per_step():
    """Linear from 0.2 × lr to lr over 23 % of the steps, then linear down to 0.07 × lr at the last step."""
    config = TrainConfig(schedule="triangle", epochs=10, lr=2.0)
    optimizer, scheduler, per_step = optimizer_and_schedule(config, torch.nn.Linear(2, 2), torch.device("cpu"), 10)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = lrs.index(max(lrs))
    assert per_step and lrs[0] == pytest.approx(0.4) and max(lrs) == pytest.approx(2.0) and peak == 22
    rises, falls = torch.tensor(lrs[:peak + 1]).diff(), torch.tensor(lrs[peak:]).diff()
    assert torch.allclose(rises, rises[0]) and torch.allclose(falls, falls[0], atol=1e-6)  # both straight lines
    assert lrs[-1] == pytest.approx(0.14, rel=0.02)


def test_lookahead_pulls_toward_the_slow_weights_as_training_ends_and_ends_on_them(fetched):
    """timm's Lookahead every 5 steps, its alpha airbench94's 1 - 0.95⁵(t/T)³: a no-op at first, so the first
    steps are plain SGD's; the run ends on the slow weights, and resumes with them."""
    from pipeline.train import lookahead_alpha

    assert lookahead_alpha(0, 100) == 1.0 and lookahead_alpha(100, 100) == pytest.approx(1 - 0.95**5)
    model = torch.nn.Linear(2, 1, bias=False)
    optimizer, _, _ = optimizer_and_schedule(TrainConfig(lookahead=True, lr=0.1, momentum=0, weight_decay=0),
                                             model, torch.device("cpu"), 10)
    from pipeline.train import lookahead_finish, lookahead_step
    start, history = model.weight.detach().clone(), []
    for step in range(1, 11):
        lookahead_step(optimizer, step, 10)
        model.weight.grad = torch.ones_like(model.weight)
        optimizer.step()
        history.append(model.weight.detach() - start)
    slow = optimizer._base_optimizer.state[model.weight]["lookahead_slow_buff"]
    # every step moves 0.1; timm starts the slow copy at the first sync (step 5), where alpha is 1 - 0.95⁵/8 ≈ 1
    # in any case; at step 10 the slow copy moves alpha(10, 10) of the 0.5 since then, and the weights to it
    assert torch.allclose(history[4], torch.full_like(start, -0.5))
    assert torch.allclose(history[9], torch.full_like(start, -0.5 - 0.5 * lookahead_alpha(10, 10)))
    assert torch.equal(model.weight.detach(), slow)
    lookahead_finish(optimizer)
    assert torch.equal(model.weight.detach(), slow)
    options = {**QUICK, **dict(epochs=2, limit=64, lookahead=True)}
    straight = train(TrainConfig(**options, name="straight")).run_dir
    halted = train(TrainConfig(**{**options, "epochs": 1}, name="halted")).run_dir
    with pytest.raises(PipelineError, match="finished its --lookahead schedule, which spans its epochs"):
        resume(halted, {"epochs": 3})  # its alpha schedule spans the epochs it planned
    checkpoint = load_checkpoint(straight / "last.pt")
    assert all("lookahead_slow_buff" in state for state in checkpoint["optimizer"]["state"].values())
    assert checkpoint["optimizer"]["param_groups"][0]["lookahead_alpha"] == 0.0  # ended on the slow weights
