import pytest
import torch
from safetensors.torch import save_file

from padhash.errors import PadhashError
from padhash.models import BACKBONES, HashEnsemble, build_model
from padhash.models import create_backbone


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_maps_32px_images_to_codes_and_features(backbone):
    torch.manual_seed(0)
    model = build_model(backbone, 16).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        u, f = model(x), model.features(x)
    assert u.shape == (2, 16) and u.dtype == torch.float32
    assert f.shape == (2, model.hash_layer.in_features)
    assert torch.allclose(model.hash_layer(f), u, atol=1e-6)
    assert model.bits == 16 and model.backbone_name == backbone


def test_smallcnn_accepts_larger_inputs_and_normalizes_first():
    model = build_model("smallcnn", 8).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 8)
        # the first layer maps ImageNet-mean grey to zero
        grey = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
        assert model.normalize(grey).abs().max() < 1e-6


def test_local_weights_load_into_backbone(tmp_path):
    torch.manual_seed(1)
    donor = create_backbone("smallcnn").module
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
    model = build_model("smallcnn", 8, weights=str(path))
    for k, v in donor.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v)


def test_torch_weights_file_loads_with_head_absent(tmp_path):
    from torchvision.models import mobilenet_v2

    torch.manual_seed(2)
    donor = mobilenet_v2(weights=None).state_dict()
    state = {k: v for k, v in donor.items() if not k.startswith("classifier.")}  # an ImageNet head is optional
    path = tmp_path / "w.pth"
    torch.save(state, path)
    model = build_model("mobilenet_v2", 8, weights=str(path))
    key = "features.0.0.weight"
    assert torch.equal(model.backbone.net.state_dict()[key], donor[key])


def test_bad_weights_and_names_raise_one_line_errors(tmp_path):
    with pytest.raises(PadhashError, match="no such weights file"):
        build_model("smallcnn", 8, weights=str(tmp_path / "missing.safetensors"))
    wrong = tmp_path / "wrong.safetensors"
    save_file({"features.0.weight": torch.zeros(1)}, str(wrong))
    with pytest.raises(PadhashError, match="has shape"):
        build_model("smallcnn", 8, weights=str(wrong))
    with pytest.raises(PadhashError, match="unknown backbone"):
        build_model("resnet999", 8)
    with pytest.raises(PadhashError, match="bits"):
        build_model("smallcnn", 0)


def test_ensemble_output_is_the_mean_of_members():
    torch.manual_seed(3)
    members = [build_model("smallcnn", 8).eval() for _ in range(2)]
    ensemble = HashEnsemble(members).eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ensemble(x), (members[0](x) + members[1](x)) / 2, atol=1e-6)
    with pytest.raises(PadhashError, match="code length"):
        HashEnsemble([build_model("smallcnn", 8), build_model("smallcnn", 16)])
