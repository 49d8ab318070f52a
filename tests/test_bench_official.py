"""scripts/bench_official.py at toy size: every official-structure implementation computes
what forgetkit computes (same weights, inputs and seeds). No time is asserted here: the
speed comparison is the benchmark's, never a test's."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import load_script

import forgetkit as fk

bench = load_script("bench_official")

# Largest relative difference allowed per method (float32 unless said otherwise). Most
# results are bit-identical; the rest differ by float rounding of differently batched
# kernels. Mnemonic's float32 Fisher of an untrained network on raw codes loses digits to
# cancellation (batched against one code at a time), so its float64 check is separate.
TOLERANCE = {"fisher": 1e-5, "forsaken": 1e-5, "lcodec": 1e-5, "mnemonic": 5e-3,
             "jit": 1e-4, "ssd": 1e-6, "scrub": 1e-5}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("method", bench.METHODS)
def test_official_structure_agrees_with_forgetkit(method):
    rows = bench.run(method, "toy", repeats=1)
    assert rows and all(r.method == method for r in rows)
    for r in rows:
        assert r.max_rel_diff <= TOLERANCE[method], (r.what, r.network, r.max_rel_diff)
        assert r.agree is not False, (r.what, r.network, r.note)  # selection, sign, counts
        assert r.official_s > 0 and r.forgetkit_s > 0
    assert any(r.what.startswith("unlearning step") for r in rows)


def test_jit_rows_measure_float32_rounding_against_a_float64_official_step():
    for r in bench.run("jit", "toy", repeats=1):
        # both float32 results sit about as far from the float64 step as from each other
        assert 0 < r.official_f64_diff < 1e-3, (r.network, r.official_f64_diff)
        assert r.forgetkit_f64_diff <= 2 * r.official_f64_diff + r.max_rel_diff, r.network


def test_the_targets_the_issue_names_are_rows():
    targets = {
        (r.method, r.what, r.network.split(" ")[0]): r.target
        for m in ("fisher", "lcodec", "jit")
        for r in bench.run(m, "toy", repeats=1)
    }
    assert targets[("fisher", "Fisher pass", "ResNet-18")] == 3.0
    assert targets[("lcodec", "FOCI", "MLP")] == 3.0
    assert targets[("jit", "unlearning step", "vgg_small")] == 2.0
    assert targets[("jit", "unlearning step", "small_cnn")] == 1.0


def test_foci_official_structure_selects_as_forgetkit_in_float64():
    gen = torch.Generator().manual_seed(0)
    z = torch.rand(200, 12, generator=gen, dtype=torch.float64)
    y = z[:, 3] + z[:, 7] ** 2 + 0.1 * torch.rand(200, generator=gen, dtype=torch.float64)
    selected, scores = bench.official_foci(z, y)
    ours = bench.foci(y, z, jitter=0.0)
    assert selected == ours.selected and selected[:2] in ([3, 7], [7, 3])
    assert bench.max_rel_diff(torch.tensor(ours.scores), torch.tensor(scores)) < 1e-6


def test_mnemonic_official_structure_equals_forgetkit_in_float64():
    model = bench.seeded_build(lambda: bench.CifarResNet18(10, 0.125), 0).double()
    codes = torch.stack([bench.draw_code(c, (3, 32, 32), 0) for c in range(10)]).double()
    record = {"mnemonic_codes": codes, "mnemonic_counts": torch.ones(10, dtype=torch.long)}
    forget = fk.Samples(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    method = fk.get_method("mnemonic", lambda1=1e-5, lambda2=1e4)
    with pytest.warns(fk.UtilityWarning):  # an untrained network: its utility is nil anyway
        result = method.unlearn(model, forget, record=record)
    official, sign = bench.official_mnemonic(copy.deepcopy(model), codes, [0], lambda1=1e-5,
                                             lambda2=1e4)  # fmt: skip
    assert sign == result.details["sign"]
    assert bench.max_rel_diff(result.model, official) < 1e-9


def test_max_rel_diff_and_row():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([1.0, 2.5]), "n": torch.tensor(4)}  # integer entries are skipped
    assert bench.max_rel_diff(a, b) == pytest.approx(0.2)
    row = bench.Row("ssd", "unlearning step", "net", "setting", 2.0, 1.0, 0.0, target=3.0)
    assert row.ratio == 2.0 and not row.met
    assert "NOT met" in bench.report([row])
