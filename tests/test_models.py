import copy
import pickle

import pytest
import safetensors.torch
import timm
import torch
import torchvision

from pipeline.errors import PipelineError
from pipeline.models import (
    DropoutLinear,
    build_model,
    classifier_head,
    first_conv,
    freeze_backbone,
    load_pretrained,
)
from pipeline.models.resnet import (
    BasicBlock,
    Bottleneck,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
)


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("ours, theirs", [
    (resnet18, torchvision.models.resnet18), (resnet34, torchvision.models.resnet34),
    (resnet50, torchvision.models.resnet50), (resnet101, torchvision.models.resnet101),
    (resnet152, torchvision.models.resnet152)])
def test_family_matches_torchvision_parameter_counts(ours, theirs):
    assert count(ours(num_classes=1000)) == count(theirs())


def test_blocks_carry_their_expansion():
    assert BasicBlock.expansion == 1 and Bottleneck.expansion == 4
    assert resnet50().fc.in_features == 2048 and resnet18().fc.in_features == 512


@pytest.mark.parametrize("stem, size, layer1", [("imagenet", 224, 56), ("imagenet", 32, 8),
                                                 ("improved-pool", 32, 16), ("improved", 32, 32),
                                                 ("cifar", 32, 32)])
def test_stem_feature_map_sizes(stem, size, layer1):
    model = resnet18(stem=stem).eval()
    x = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        out = model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))
    assert out.shape[-1] == layer1
    assert model(x).shape == (1, 10)


def test_improved_stem_for_both_models():
    """The write-up's improved stem is one 3×3/1 conv and no max pool; improved-pool keeps the pool."""
    for name in ("custom", "torchvision"):
        for stem, pool in (("improved", torch.nn.Identity), ("cifar", torch.nn.Identity),
                           ("improved-pool", torch.nn.MaxPool2d)):
            model = build_model(name, 10, stem)
            assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
            assert type(model.maxpool) is pool, (name, stem)
    with pytest.raises(PipelineError, match="unknown --model 'vgg'"):
        build_model("vgg", 10)


def backbone(model, x):
    model.eval()
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        return model.layer4(model.layer3(model.layer2(model.layer1(x))))


@pytest.mark.parametrize("name", ["custom", "torchvision"])
def test_pretrained_torchvision_weights_reproduce_backbone(tmp_path, name):
    torch.manual_seed(1)
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = build_model(name, 10)
    assert load_pretrained(model, tmp_path / "resnet18.pth") == ["fc.bias (head)", "fc.weight (head)"]
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(backbone(model, x), backbone(source, x), atol=1e-6)


def test_pretrained_into_improved_stem_skips_the_stem_conv(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    assert "conv1.weight (stem of another shape)" in load_pretrained(build_model("custom", 10, "improved"),
                                                                     tmp_path / "r18.pth")


def test_pretrained_errors(tmp_path):
    model = build_model("custom", 10)
    with pytest.raises(PipelineError, match="weights file not found"):
        load_pretrained(model, tmp_path / "missing.pth")
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(PipelineError, match="does not fit custom .*unexpected layer1.2"):
        load_pretrained(model, tmp_path / "r34.pth", "custom")
    (tmp_path / "junk.pth").write_bytes(b"\x00junk")
    with pytest.raises(PipelineError, match="junk.pth: not a readable PyTorch file"):
        load_pretrained(model, tmp_path / "junk.pth")


class RunsCode:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    torch.save({"model": RunsCode()}, tmp_path / "evil.pth", pickle_module=pickle)
    with pytest.raises(PipelineError, match="refused: it holds pickled objects other than tensors"):
        load_pretrained(build_model("custom", 10), tmp_path / "evil.pth")


@pytest.mark.parametrize("name, paper_gmacs", [("resnet18", 1.8), ("resnet34", 3.6), ("resnet50", 3.8),
                                               ("resnet101", 7.6), ("resnet152", 11.3)])
def test_multiply_adds_match_table_1(name, paper_gmacs):
    from pipeline.models.summary import summarize
    described = summarize(build_model(name, 1000), (3, 224, 224))
    assert described.multiply_adds / 1e9 == pytest.approx(paper_gmacs, rel=0.05)
    assert described.parameters == count(build_model(name, 1000))


def test_models_by_name_never_download():
    assert isinstance(build_model("torchvision:vgg11", 7).classifier[-1], torch.nn.Linear)
    assert build_model("torchvision:vgg11", 7).classifier[-1].out_features == 7
    assert build_model("timm:resnet18", 5).eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    assert build_model("torchvision:resnet34", 10, "cifar").maxpool.__class__ is torch.nn.Identity
    with pytest.raises(PipelineError, match="close matches: torchvision:resnet18"):
        build_model("torchvision:resnt18", 10)
    with pytest.raises(PipelineError, match="--stem improved applies to ResNet-style models"):
        build_model("torchvision:vgg11", 10, "improved")


def test_summary_lists_layers():
    from pipeline.models.summary import summarize
    described = summarize(build_model("custom", 10, "improved"), (3, 32, 32))
    assert described.parameters == count(build_model("custom", 10, "improved"))
    assert sum(layer.parameters for layer in described.layers) == described.parameters
    assert described.layers[0].name == "conv1" and described.layers[0].output_shape == (1, 64, 32, 32)
    assert described.layers[-1].output_shape == (1, 10)


def features(model, x):
    """What a backbone hands its head: the model with its classifier replaced by an identity."""
    head_name, _ = classifier_head(model)
    headless = copy.deepcopy(model).eval()
    parent, _, child = head_name.rpartition(".")
    setattr(headless.get_submodule(parent) if parent else headless, child, torch.nn.Identity())
    with torch.no_grad():
        return headless(x)


@pytest.mark.parametrize("name, make", [
    ("timm:resnet18", lambda: timm.create_model("resnet18", pretrained=False)),
    ("timm:efficientnet_b0", lambda: timm.create_model("efficientnet_b0", pretrained=False)),
    ("torchvision:mobilenet_v3_small", lambda: torchvision.models.mobilenet_v3_small()),
])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_library_models_reproduce_backbone(tmp_path, name, make, suffix):
    torch.manual_seed(2)
    source = make().eval()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file({k: v.contiguous() for k, v in source.state_dict().items()}, path)
    else:
        torch.save(source.state_dict(), path)
    model = build_model(name, 7)
    notes = load_pretrained(model, path, name)
    assert notes and all(note.endswith("(head)") for note in notes)
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(features(model, x), features(source, x), atol=1e-5)
    assert model.eval()(x).shape == (2, 7)


@pytest.mark.parametrize("name", ["custom", "torchvision:resnet18", "timm:resnet18"])
def test_one_channel_models_take_rgb_weights_summed(tmp_path, name):
    torch.manual_seed(3)
    source = torchvision.models.resnet18().eval()
    torch.save(source.state_dict(), tmp_path / "rgb.pth")
    model = build_model(name, 10, in_chans=1)
    assert first_conv(model)[1].in_channels == 1
    assert "conv1.weight adapted from 3 to 1 input channels" in load_pretrained(model, tmp_path / "rgb.pth")
    grey = torch.rand(2, 1, 64, 64)
    # a grey image through the summed kernel is the RGB model on that grey image in all three channels
    assert torch.allclose(features(model, grey), features(source, grey.expand(-1, 3, -1, -1)), atol=1e-4)


@pytest.mark.smoke
def test_state_dict_wrappers_and_bad_safetensors(tmp_path):
    source = torchvision.models.resnet18()
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "ddp.pth")
    assert load_pretrained(build_model("custom", 10), tmp_path / "ddp.pth") == ["fc.bias (head)", "fc.weight (head)"]
    averaged = torchvision.models.resnet18().state_dict()
    torch.save({"model": source.state_dict(), "ema": averaged, "epoch": 3}, tmp_path / "run.pt")
    model = build_model("custom", 10)
    load_pretrained(model, tmp_path / "run.pt")  # a pipeline checkpoint gives its EMA weights
    assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], averaged["layer1.0.conv1.weight"])
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(PipelineError, match="bad.safetensors: not a readable safetensors file"):
        load_pretrained(build_model("custom", 10), tmp_path / "bad.safetensors")


@pytest.mark.parametrize("name", ["custom", "torchvision:vgg11", "timm:resnet18"])
def test_head_dropout_keeps_the_state_dict(name):
    torch.manual_seed(4)
    plain, dropped = build_model(name, 6), build_model(name, 6, head_dropout=0.5)
    assert plain.state_dict().keys() == dropped.state_dict().keys()
    assert isinstance(classifier_head(dropped)[1], DropoutLinear) and classifier_head(dropped)[1].dropout.p == 0.5
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 32, 32)
    plain.eval(), dropped.eval()
    with torch.no_grad():
        assert torch.allclose(plain(x), dropped(x), atol=1e-6)  # dropout is off in eval
        head = classifier_head(dropped)[1].train()
        features_in = torch.ones(1000, head.in_features)
        zeroed = (head.dropout(features_in) == 0).float().mean()
    assert 0.4 < zeroed < 0.6


def test_freeze_backbone_leaves_only_the_head_trainable():
    model = build_model("custom", 10)
    norms = freeze_backbone(model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    assert len(norms) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_fastnet_whitening_decorrelates_training_patches():
    from pipeline.models.fastnet import FastNet
    torch.manual_seed(0)
    images = torch.randn(64, 3, 16, 16)
    images = images + 0.8 * torch.roll(images, 1, 2) + 0.5 * images[:, :1]  # correlated pixels and channels
    model = FastNet(num_classes=4)
    model.init_from_data(images)
    half = model.whiten.weight.shape[0] // 2
    features = torch.nn.functional.conv2d(images, model.whiten.weight[:half]).permute(0, 2, 3, 1).reshape(-1, half)
    covariance = features.T @ features / len(features)
    assert torch.allclose(covariance, torch.eye(half), atol=2e-3)
    assert torch.equal(model.whiten.weight[half:], -model.whiten.weight[:half])
    assert not model.whiten.weight.requires_grad  # set from data, then frozen


@pytest.mark.parametrize("name", ["fastnet", "fastnet-wide"])
@pytest.mark.parametrize("channels, size", [(3, 32), (1, 28), (3, 9), (3, 64)])
def test_fastnet_takes_any_channels_and_sizes(name, channels, size):
    model = build_model(name, 7, in_chans=channels).eval()
    assert model(torch.randn(2, channels, size, size)).shape == (2, 7)


def test_fastnet_wide_is_airbench96s_net():
    """128, 384, 512 channels, three convs a group, the third's output added to the group's first activation."""
    model = build_model("fastnet-wide", 10).eval()
    assert [model.layer1.conv1.out_channels, model.layer2.conv3.out_channels, model.layer3.conv3.out_channels] == \
        [128, 384, 512] and model.fc.in_features == 512
    assert 9.9e6 < sum(p.numel() for p in model.parameters()) < 9.95e6
    group, x = model.layer2, torch.randn(2, 128, 16, 16)
    with torch.no_grad():
        first = group.activation(group.norm1(group.pool(group.conv1(x))))
        torch.nn.init.zeros_(group.conv3.weight)  # the residual branch silenced: the group passes on GELU(first)
        assert torch.allclose(group(x), group.activation(first + group.norm3.bias[:, None, None]), atol=1e-6)


def test_fastnet_refuses_what_it_cannot_take():
    model = build_model("fastnet", 4).eval()
    with pytest.raises(PipelineError, match="needs images of 9×9 pixels or more, got 8×8; enlarge them with --img-size"):
        model(torch.randn(2, 3, 8, 8))
    with pytest.raises(PipelineError, match="--stem improved applies to the ResNets, not fastnet"):
        build_model("fastnet", 4, stem="improved")
    with pytest.raises(PipelineError, match="--stem improved applies to the ResNets, not fastnet-wide"):
        build_model("fastnet-wide", 4, stem="improved")
