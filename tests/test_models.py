import pickle

import pytest
import torch
import torchvision

from pipeline.errors import PipelineError
from pipeline.models import build_model, load_pretrained
from pipeline.models.resnet import BasicBlock, Bottleneck, resnet18, resnet34, resnet50, resnet101, resnet152


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
                                                 ("improved", 32, 16), ("cifar", 32, 32)])
def test_stem_feature_map_sizes(stem, size, layer1):
    model = resnet18(stem=stem).eval()
    x = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        out = model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))
    assert out.shape[-1] == layer1
    assert model(x).shape == (1, 10)


def test_improved_stem_for_both_models():
    for name in ("custom", "torchvision"):
        conv = build_model(name, 10, "improved").conv1
        assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
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
    assert load_pretrained(model, tmp_path / "resnet18.pth") == ["fc.bias", "fc.weight"]
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(backbone(model, x), backbone(source, x), atol=1e-6)


def test_pretrained_into_improved_stem_skips_the_stem_conv(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    assert "conv1.weight" in load_pretrained(build_model("custom", 10, "improved"), tmp_path / "r18.pth")


def test_pretrained_errors(tmp_path):
    model = build_model("custom", 10)
    with pytest.raises(PipelineError, match="weights file not found"):
        load_pretrained(model, tmp_path / "missing.pth")
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(PipelineError, match="does not fit a ResNet-18 .*unexpected layer1.2"):
        load_pretrained(model, tmp_path / "r34.pth")
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
