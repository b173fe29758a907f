"""imlib.models: the CIFAR ResNet-18 (shape, size, stem) and the small CPU CNN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imlib.models import MODELS, build_model, for_inference, resnet18_cifar, small_cnn


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return resnet18_cifar(100)


def test_resnet18_cifar_maps_cifar_images_to_class_logits(resnet):
    resnet.eval()
    with torch.no_grad():
        assert resnet(torch.rand(2, 3, 32, 32)).shape == (2, 100)


def test_resnet18_cifar_has_11_2_million_parameters(resnet):
    """ResNet-18 body (11.17 M) with a 3x3 stem and a 512 x 100 head."""
    count = sum(p.numel() for p in resnet.parameters())
    assert 11.1e6 < count < 11.3e6


def test_resnet18_cifar_has_the_cifar_stem_and_keeps_a_4x4_map(resnet):
    """A 3x3 stride-1 first conv and no max-pool: 32x32 inputs reach layer4 as 4x4 (the ImageNet
    stem, 7x7 stride 2 + max-pool, would leave 1x1)."""
    assert isinstance(resnet.conv1, nn.Conv2d)
    assert resnet.conv1.kernel_size == (3, 3) and resnet.conv1.stride == (1, 1)
    assert resnet.conv1.in_channels == 3
    assert isinstance(resnet.maxpool, nn.Identity)
    seen = {}

    def record(module, inputs, output):
        seen["shape"] = output.shape  # returns None: the output is left unchanged

    handle = resnet.layer4.register_forward_hook(record)
    resnet.eval()
    with torch.no_grad():
        resnet(torch.rand(1, 3, 32, 32))
    handle.remove()
    assert seen["shape"] == (1, 512, 4, 4)


def test_small_cnn_outputs_one_logit_per_class_and_is_small():
    model = small_cnn(10)
    assert model(torch.rand(4, 3, 32, 32)).shape == (4, 10)
    assert sum(p.numel() for p in model.parameters()) < 1e6


def test_small_cnn_trains_on_a_fixed_batch():
    """A few optimiser steps on one batch lower its loss: gradients flow through every block."""
    torch.manual_seed(0)
    model = small_cnn(10)
    x, y = torch.rand(16, 3, 32, 32), torch.arange(16) % 10
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())


@pytest.mark.parametrize(("name", "classes"), [("small_cnn", 7), ("resnet18", 3)])
def test_build_model_by_name(name, classes):
    model = build_model(name, classes)
    assert type(model) is type(MODELS[name](classes))
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, classes)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: build_model("vgg16", 10), r"model must be one of .*resnet18.*small_cnn"),
        (lambda: build_model("small_cnn", 1), r"num_classes must be an int >= 2"),
        (lambda: resnet18_cifar(0), r"num_classes must be an int >= 2"),
        (lambda: small_cnn(1), r"num_classes must be an int >= 2"),
        (lambda: small_cnn(10.0), r"num_classes must be an int"),
        (lambda: resnet18_cifar(True), r"num_classes must be an int >= 2, got True"),
    ],
    ids=["unknown_model", "build_k_1", "resnet_k_0", "cnn_k_1", "cnn_k_float", "resnet_k_bool"],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_for_inference_folds_batchnorm_and_computes_the_same_function(name):
    """Trained-looking BatchNorm statistics (not the identity a fresh layer has), then the
    folded copy against the eval-mode original on the same images."""
    torch.manual_seed(0)
    model = build_model(name, 10)
    for layer in model.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
            layer.weight.data.uniform_(0.5, 1.5)
            layer.bias.data.uniform_(-0.2, 0.2)
    model.train()
    folded = for_inference(model)
    assert model.training  # the original is left as it was
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        expected = torch.softmax(model.eval()(x), 1)
        assert torch.allclose(torch.softmax(folded(x), 1), expected, atol=1e-5)
