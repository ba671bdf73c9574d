"""FiLM + λ encoding (OAT): orthonormal rows, interpolation, range errors, routing, sharing."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import robustdial as rd
from robustdial.layers import DualBatchNorm2d
from robustdial.export import film_affine
from robustdial.layers.film import FiLM, LambdaEncoding
from _nets import TinyNet

VALUES = (0.0, 0.1, 0.2, 0.3, 0.4, 1.0)


def test_encoding_rows_orthonormal():
    enc = LambdaEncoding(VALUES, dim=128, seed=0)
    rows = enc.encode(torch.tensor(VALUES))
    gram = rows @ rows.T
    torch.testing.assert_close(gram, torch.eye(len(VALUES)), atol=1e-5, rtol=0)
    # each training λ maps to exactly its own row
    for j, v in enumerate(VALUES):
        assert torch.equal(enc.encode(v)[0], enc.matrix[j])


def test_encoding_depends_on_seed_only():
    a, b, c = LambdaEncoding(dim=16, seed=3), LambdaEncoding(dim=16, seed=3), LambdaEncoding(dim=16, seed=4)
    assert torch.equal(a.matrix, b.matrix) and not torch.equal(a.matrix, c.matrix)


def test_interpolation_between_neighbouring_rows():
    enc = LambdaEncoding(VALUES, dim=32)
    q = enc.matrix
    torch.testing.assert_close(enc.encode(0.15)[0], 0.5 * q[2 - 1] + 0.5 * q[2])  # between .1 and .2
    torch.testing.assert_close(enc.encode(0.7)[0], 0.5 * q[4] + 0.5 * q[5])  # between .4 and 1
    torch.testing.assert_close(enc.encode(0.55)[0], 0.75 * q[4] + 0.25 * q[5])
    per_sample = enc.encode(torch.tensor([0.15, 0.7, 1.0]))
    torch.testing.assert_close(per_sample[0], enc.encode(0.15)[0])
    torch.testing.assert_close(per_sample[2], q[5])


def test_encoding_outside_trained_range():
    enc = LambdaEncoding((0.0, 0.5), dim=8)
    with pytest.raises(ValueError, match=r"outside the trained range \[0, 0.5\]"):
        enc.encode(0.7)
    assert LambdaEncoding(dim=1).encode(0.37).item() == pytest.approx(0.37)


def test_bad_encoding_settings():
    with pytest.raises(ValueError, match="embed_dim"):
        LambdaEncoding(VALUES, dim=4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        LambdaEncoding((0.0, 1.5), dim=8)


def test_lambda_outside_unit_interval_through_set_condition():
    net = TinyNet("oat")
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            rd.set_condition(net, lam=bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rd.set_condition(net, lam=torch.tensor([0.0, 2.0]))


def test_film_formula():
    enc = LambdaEncoding(VALUES, dim=16)
    film = FiLM(4, enc)
    rd.set_condition(film, lam=0.2)
    x = torch.randn(3, 4, 5, 5)
    h = film.fc2(nn.functional.leaky_relu(film.fc1(enc.matrix[2:3]), 0.01))
    mu, sigma = nn.functional.leaky_relu(h, 0.01).chunk(2, dim=1)
    expected = x * mu.view(1, 4, 1, 1) + sigma.view(1, 4, 1, 1)
    torch.testing.assert_close(film(x), expected)


def test_per_sample_lambda_equals_separate_forwards():
    torch.manual_seed(0)
    net = TinyNet("oat")
    net.train()
    for lam in (0.0, 1.0):  # give both BNs non-trivial running statistics
        with rd.conditioned(net, lam=lam):
            net(torch.rand(16, 1, 12, 12))
    net.eval()
    x = torch.rand(6, 1, 12, 12)
    lams = torch.tensor(VALUES)
    with torch.no_grad(), rd.conditioned(net, lam=lams):
        joint = net(x)
    for i, lam in enumerate(VALUES):
        with torch.no_grad(), rd.conditioned(net, lam=lam):
            single = net(x[i:i + 1])
        torch.testing.assert_close(joint[i:i + 1], single, atol=1e-5, rtol=1e-5)
    # and λ really changes the output
    assert not torch.allclose(joint[0], joint[5])


def test_oat_net_routes_lambda_zero_to_clean_bn():
    net = TinyNet("oat").train()
    duals = [m for m in net.modules() if isinstance(m, DualBatchNorm2d)]
    assert len(duals) == 3  # two main norms + aux norm

    def stats():
        return [(m.bn_c.running_mean.clone(), m.bn_a.running_mean.clone()) for m in duals]

    x = torch.rand(8, 1, 12, 12)
    before = stats()
    with rd.conditioned(net, lam=0.0):
        net(x)
    after = stats()
    for (c0, a0), (c1, a1) in zip(before, after):
        assert not torch.equal(c0, c1) and torch.equal(a0, a1)
    with rd.conditioned(net, lam=0.4):
        net(x)
    for (c1, a1), (c2, a2) in zip(after, stats()):
        assert torch.equal(c1, c2) and not torch.equal(a1, a2)
    # the clean route of a dual BN is exactly a BatchNorm with the same state
    dual, bn = duals[0], nn.BatchNorm2d(duals[0].num_features)
    bn.load_state_dict(dual.bn_c.state_dict())
    h = torch.randn(4, dual.num_features, 3, 3)
    rd.set_condition(net, lam=0.0)
    torch.testing.assert_close(dual(h), bn(h))


def test_encoding_stored_once_and_restored():
    net = TinyNet("oat")
    keys = [k for k in net.state_dict() if "encoding" in k]
    assert sorted(k.rsplit(".", 1)[1] for k in keys) == ["matrix", "values"]
    films = [m for m in net.modules() if isinstance(m, FiLM)]
    assert len(films) == 2 and films[0].encoding is films[1].encoding
    other = TinyNet("oat", encoding_seed=7)
    mkey = next(k for k in keys if k.endswith("matrix"))
    assert not torch.equal(other.state_dict()[mkey], net.state_dict()[mkey])
    other.load_state_dict(net.state_dict())
    for o, n in zip((m for m in other.modules() if isinstance(m, FiLM)), films):
        assert torch.equal(o.encoding.matrix, n.encoding.matrix)
    x = torch.rand(2, 1, 12, 12)
    net.eval(), other.eval()
    with rd.conditioned(net, lam=0.7), rd.conditioned(other, lam=0.7):
        torch.testing.assert_close(net(x), other(x))


def test_oat_param_count_of_film():
    # FiLM(C) with d-dim encoding: Linear(d, 2C) + Linear(2C, 2C)
    enc = LambdaEncoding(dim=128)
    assert sum(p.numel() for p in FiLM(64, enc).parameters()) == 128 * 128 + 128 + 128 * 128 + 128


def test_film_identity_init_starts_near_identity():
    """Default init: μ ≈ 1, σ ≈ 0 for every training λ; ``init="pytorch"`` is the authors' (μ ≈ 0)."""
    torch.manual_seed(0)
    enc = LambdaEncoding(VALUES, dim=128)
    film = FiLM(32, enc)
    x = torch.randn(4, 32, 3, 3)
    for lam in VALUES:
        rd.set_condition(film, lam=lam)
        mu, sigma = film_affine(film, lam)
        assert mu.min() > 0.6 and mu.max() < 1.4 and sigma.abs().max() < 0.4
        assert (film(x) - x).abs().mean() < 0.3 * x.abs().mean()
    # λ still matters from the first step: different rows give different modulations
    assert not torch.allclose(film_affine(film, 0.0)[0], film_affine(film, 1.0)[0])
    old = FiLM(32, enc, init="pytorch")
    mu, _ = film_affine(old, 0.0)
    assert mu.abs().max() < 0.3  # the ~30× shrink that stalls plain stacks
    with pytest.raises(ValueError, match="film_init must be one of"):
        FiLM(4, enc, init="ones")
    with pytest.raises(ValueError, match="film_init must be one of"):
        rd.create_model("small_cnn", conditioning="oat", film_init="zeros")


@pytest.mark.slow
@pytest.mark.parametrize("batch_norm", [False, True])
def test_oat_small_cnn_learns_with_identity_init(shared_data_root, batch_norm):
    """OAT SmallCNN (4 FiLMs in a plain stack) trains on real MNIST; the authors' init does not.

    Clean OAT training (λ = 0 only) for 60 SGD steps: the identity-start FiLM
    gets the loss well below chance, PyTorch's default init stays at
    log(10) ≈ 2.30 (μ ≈ 0 shrinks every feature map, the gradients vanish).
    """
    from robustdial.data import load_dataset
    from robustdial.methods.oat import OAT

    data = load_dataset("mnist", root=shared_data_root, split="train").subset(2048)
    x, y = data.images.float() / 255, data.labels
    final = {}
    for init in ("identity", "pytorch"):
        torch.manual_seed(0)
        net = rd.create_model("small_cnn", conditioning="oat", lam_values=(0.0,), film_init=init,
                              batch_norm=batch_norm).train()
        opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
        method = OAT(lam_values=(0.0,), seed=0)
        g = torch.Generator().manual_seed(0)
        for _ in range(60):
            i = torch.randint(0, len(y), (64,), generator=g)
            loss, _ = method.loss(net, (x[i], y[i]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad(), rd.conditioned(net, lam=0.0):
            final[init] = (nn.functional.cross_entropy(net(x[:512]), y[:512]).item(),
                           (net(x[:512]).argmax(1) == y[:512]).float().mean().item())
    assert final["identity"][0] < 1.0 and final["identity"][1] > 0.7, final
    assert final["pytorch"][0] > 2.2, final


def _unfolded(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """BN then FiLM, module by module (what NormFiLM folds)."""
    for m in seq:
        x = m(x)
    return x


@pytest.mark.parametrize("dual", [True, False])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_norm_film_fold_equals_bn_then_film(dual, momentum, monkeypatch):
    """At a scalar λ NormFiLM's one-pass fold equals BN → FiLM: outputs, running stats, grads."""
    import robustdial.layers.film as film_mod
    from robustdial.condition import set_condition
    from robustdial.layers.film import NormFiLM

    folds = []
    real = film_mod._batch_norm
    monkeypatch.setattr(film_mod, "_batch_norm", lambda *a: folds.append(1) or real(*a))

    torch.manual_seed(0)
    enc = LambdaEncoding(VALUES, dim=16, seed=0)
    bn_kw = {"momentum": momentum}
    make = (lambda: DualBatchNorm2d(6, **bn_kw)) if dual else (lambda: nn.BatchNorm2d(6, **bn_kw))
    a = NormFiLM(make(), FiLM(6, enc))
    with torch.no_grad():  # a non-trivial affine and FiLM
        for p in a.parameters():
            p.add_(0.3 * torch.randn_like(p))
    b = nn.Sequential(*[__import__("copy").deepcopy(m) for m in a])
    b[1].encoding = a[1].encoding
    x = torch.randn(8, 6, 5, 5)
    for lam in (0.0, 0.3, 1.0):
        for train in (True, False):
            a.train(train), b.train(train)
            set_condition(a, lam=lam)
            set_condition(b, lam=lam)
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            ya, yb = a(xa), _unfolded(b, xb)
            torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
            (ya * torch.arange(ya.numel()).reshape(ya.shape).sin()).sum().backward()
            (yb * torch.arange(yb.numel()).reshape(yb.shape).sin()).sum().backward()
            torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
            for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
                if pa.grad is not None or pb.grad is not None:
                    torch.testing.assert_close(pa.grad, pb.grad, atol=1e-4, rtol=1e-4, msg=n)
            for (n, ba), (_, bb) in zip(a.named_buffers(), b.named_buffers(), strict=True):
                torch.testing.assert_close(ba, bb, atol=1e-6, rtol=1e-6, msg=n)
    assert len(folds) == 6  # every scalar-λ forward took the fold
    assert list(a.state_dict()) == list(b.state_dict())  # same keys as the plain Sequential


def test_norm_film_per_sample_lam_falls_back():
    """Per-sample λ: NormFiLM runs BN (routed per sample) then FiLM, as the plain sequence."""
    from robustdial.condition import set_condition
    from robustdial.layers.film import NormFiLM

    torch.manual_seed(0)
    enc = LambdaEncoding(VALUES, dim=16, seed=0)
    a = NormFiLM(DualBatchNorm2d(4), FiLM(4, enc)).train()
    lam = torch.tensor([0.0, 0.0, 0.2, 1.0, 0.4, 0.1])
    set_condition(a, lam=lam)
    x = torch.randn(6, 4, 3, 3)
    torch.testing.assert_close(a(x), _unfolded(a, x))
