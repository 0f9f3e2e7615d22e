import pytest
import torch

from dbp_control.core.policies.nets.encoders import ObservationEncoder
from dbp_control.core.policies.nets.resnet import ResNet18
from dbp_control.core.policies.nets.unet1d import UNET_PRESETS, ConditionalUnet1D, UnetConfig, resolve_down_dims


@pytest.mark.parametrize("preset", sorted(UNET_PRESETS))
def test_unet_presets_map_chunks_to_chunks(preset):
    net = ConditionalUnet1D(UnetConfig(input_dim=14, global_cond_dim=10, down_dims=UNET_PRESETS[preset]))
    out = net(torch.randn(2, 16, 14), torch.randn(2, 10))
    assert out.shape == (2, 16, 14)


def test_unet_condition_changes_the_output():
    torch.manual_seed(0)
    net = ConditionalUnet1D(UnetConfig(input_dim=2, global_cond_dim=3, down_dims=(16, 32)))
    z = torch.randn(1, 8, 2)
    assert not torch.allclose(net(z, torch.zeros(1, 3)), net(z, torch.ones(1, 3)))


def test_unet_rejects_misuse():
    plain = ConditionalUnet1D(UnetConfig(input_dim=2, global_cond_dim=3, down_dims=(16, 32, 64)))
    with pytest.raises(ValueError, match="multiple of 4"):
        plain(torch.randn(1, 6, 2), torch.randn(1, 3))
    with pytest.raises(ValueError, match="no time-step"):
        plain(torch.randn(1, 8, 2), torch.randn(1, 3), torch.tensor([3]))
    with pytest.raises(ValueError, match=r"\[B, T, 2\]"):
        plain(torch.randn(1, 8, 3), torch.randn(1, 3))
    timed = ConditionalUnet1D(UnetConfig(input_dim=2, global_cond_dim=3, down_dims=(16, 32), step_embed_dim=16))
    with pytest.raises(ValueError, match="pass timestep"):
        timed(torch.randn(1, 8, 2), torch.randn(1, 3))
    assert timed(torch.randn(2, 8, 2), torch.randn(2, 3), torch.tensor([5])).shape == (2, 8, 2)


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="unknown backbone preset 'huge'"):
        resolve_down_dims("huge")


def test_resnet_uses_groupnorm_so_samples_do_not_depend_on_their_batch():
    torch.manual_seed(0)
    net = ResNet18(out_dim=128).train()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    images = torch.rand(3, 3, 64, 64)
    together = net(images)
    alone = net(images[:1])
    assert together.shape == (3, 128)
    torch.testing.assert_close(together[:1], alone, rtol=1e-4, atol=1e-5)


def test_encoder_concatenates_state_and_camera_features():
    enc = ObservationEncoder(state_dim=5, n_obs_steps=2, cameras=("head", "left_wrist"), image_shape=(32, 32))
    state = torch.randn(4, 2, 5)
    images = {cam: torch.randint(0, 255, (4, 2, 3, 32, 32), dtype=torch.uint8) for cam in ("head", "left_wrist")}
    assert enc(state, images).shape == (4, enc.output_dim) == (4, 2 * (5 + 2 * 128))


def test_encoder_names_bad_observations():
    enc = ObservationEncoder(state_dim=5, n_obs_steps=2, cameras=("head",), image_shape=(32, 32))
    state = torch.randn(1, 2, 5)
    good = torch.zeros(1, 2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="missing \\['head'\\]"):
        enc(state, {})
    with pytest.raises(ValueError, match="unexpected \\['tail'\\]"):
        enc(state, {"head": good, "tail": good})
    with pytest.raises(TypeError, match="uint8"):
        enc(state, {"head": good.float()})
    with pytest.raises(ValueError, match="image size"):
        enc(state, {"head": torch.zeros(1, 2, 3, 16, 16, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="n_obs_steps"):
        enc(torch.randn(1, 3, 5), {"head": good})
