"""Tests for `tpcompile verify`: the statistics on synthetic errors, the command end to end, and
mutations of the compiled kernel proving that the check can fail.

False-failure and detection rates of the end-to-end runs were measured by resampling: empirical
kernels of 96 seeds per width were computed once, then 3000 random 16-seed subsets per width were
put through the verdict (`fit_rate(...).ok` for NNGP and NTK), with the true and mutated K∞:

    program     widths         seeds   K∞              fails
    mlp.tp      64 .. 1024     16      correct         0 / 3000      (NTK slope -0.52 on average)
    mlp.tp      64 .. 1024     16      NTK − readout   3000 / 3000   (slope -0.13)
    cnn1d.tp    64 .. 1024     16      correct         0 / 3000      (slope -0.49)
    cnn1d.tp    64 .. 1024     16      1.1 · NTK       3000 / 3000   (slope -0.13)

so each test below fails for a correct compiler with probability < 0.1% (≈ 1/3000 or less) for a
fresh choice of seeds; the command's seeds are fixed (0..S-1), which makes the tests
deterministic.
"""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest

import tpcompile.api as api
from tpcompile.cli import main
from tpcompile.finite.verify import EXIT_FAILED, Progress, fit_rate

EXAMPLES = Path(__file__).parent.parent / "examples"
SMALL = ["--widths", "64,128,256,512,1024", "--seeds", "16"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


def mutate(monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """Make `Compiled.kernel_fn` wrong in a way a compiler bug could."""
    original = api.Compiled.kernel_fn

    def wrong(self: api.Compiled, x1: object, x2: object = None, get: object = ("nngp", "ntk")):
        k = original(self, x1, x2, get=get)
        if change == "drop readout term":  # the NTK's readout term is sv2·E[y y'] = the NNGP
            return k._replace(ntk=k.ntk - k.nngp)
        return k._replace(ntk=1.1 * k.ntk)  # e.g. a σ² applied twice to one layer

    monkeypatch.setattr(api.Compiled, "kernel_fn", wrong)


# ---- the statistics, on synthetic errors (exact expectations, no networks) ---------------------


WIDTHS = [256, 512, 1024, 2048, 4096]


def synthetic(c: float, plateau: float = 0.0, seeds: int = 32) -> np.ndarray:
    # Errors like a random matrix's relative norm: c/sqrt(n) times a half-normal-ish factor.
    rng = np.random.default_rng(0)
    noise = np.abs(rng.normal(size=(len(WIDTHS), seeds))) * np.sqrt(np.pi / 2)
    return np.sqrt((c / np.sqrt(WIDTHS))[:, None] ** 2 * noise**2 + plateau**2)


def test_fit_recovers_the_rate() -> None:
    fit = fit_rate("ntk", WIDTHS, synthetic(2.0))
    assert abs(fit.slope + 0.5) < 3 * fit.slope_se < 0.25  # a 3-standard-error check
    assert fit.ok
    assert 0.4 < fit.cv < 1.0  # half-normal: cv = 0.76
    assert fit.slope_se == pytest.approx(fit.cv / np.sqrt(32) / np.sqrt(10 * np.log(2) ** 2))


def test_fit_rejects_a_plateau() -> None:
    fit = fit_rate("ntk", WIDTHS, synthetic(2.0, plateau=0.1))
    assert fit.slope > -0.3 and not fit.ok


def test_bias_dominated_errors_pass() -> None:
    # A correct kernel whose finite-width bias (order 1/n) dominates the fluctuation at these
    # widths, as in a cubic network: error² = 4/n + 2000²/n², slope about -0.9. The old two-sided
    # window [-0.7, -0.3] failed it.
    rng = np.random.default_rng(3)
    widths = np.array(WIDTHS, dtype=float)
    mean = np.sqrt(4 / widths + 2000.0**2 / widths**2)
    errors = mean[:, None] * rng.gamma(1 / 0.45**2, 0.45**2, size=(len(WIDTHS), 8))
    fit = fit_rate("ntk", WIDTHS, errors)
    assert fit.slope < -0.7 and fit.ok


def test_bound_catches_an_upturn_at_the_widest_width() -> None:
    # On the c/sqrt(n) trend up to 2048, then flat: the last mean is 0.071 where the trend says
    # 0.05; the fit still has an acceptable slope (-0.41), but the point is above its bound.
    errors = np.array([[0.2, 0.21], [0.14, 0.15], [0.1, 0.1], [0.07, 0.075], [0.07, 0.072]])
    fit = fit_rate("nngp", WIDTHS, errors)
    assert fit.slope_ok and not fit.bound_ok


def test_progress_bar() -> None:
    import io

    stream = io.StringIO()
    bar = Progress(4, stream, bar=8)
    for i in range(4):
        bar.tick(f"step {i}")
    text = stream.getvalue()
    assert "[##......] 1/4" in text and "[########] 4/4" in text and text.endswith("\n")


# ---- the command -------------------------------------------------------------------------------


def test_verify_mlp_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(EXAMPLES / "mlp.tp"), *SMALL)
    assert code == 0, out
    assert "width   NNGP rel. error" in out
    for w in ("64", "1024"):
        assert any(line.split()[:1] == [w] for line in out.splitlines())
    assert "fitted slope of log(mean error) vs log(width): NNGP" in out
    assert "verdict: ok" in out
    assert "80/80" in err  # the progress bar: one tick per (width, seed)


CUBIC = """
input x
weight U ~ N(0, 1.0)
weight W[2..3] ~ N(0, 1.0)
h[1] = U @ x
for l in 2..3 {
    h[l] = W[l] @ (h[l-1] ** 3)
}
output h[3] ** 3
"""


@pytest.mark.slow
def test_verify_cubic_network_passes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # An exact (Isserlis) kernel of a heavy-tailed network: at widths 256..4096 the errors fall
    # like 1/n (measured slopes -1.6 NNGP, -1.8 NTK), which the old window [-0.7, -0.3] refused.
    path = tmp_path / "cubic.tp"
    path.write_text(CUBIC)
    code, out, _ = run(capsys, str(path))
    assert code == 0, out
    assert "verdict: ok" in out


def test_mutation_missing_ntk_term_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mutate(monkeypatch, "drop readout term")
    code, out, err = run(capsys, str(EXAMPLES / "mlp.tp"), *SMALL)
    assert code == EXIT_FAILED, out
    assert "verdict: FAILED — NTK slope" in out
    assert "verification failed" in err


@pytest.mark.slow
def test_mutation_scaled_ntk_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 10% error: the NTK's relative error plateaus at 0.1/1.1 = 0.09 while the noise falls
    # from 0.15 (n = 64) to 0.035 (n = 1024), so the slope flattens to about -0.13.
    mutate(monkeypatch, "scale")
    code, out, _ = run(capsys, str(EXAMPLES / "cnn1d.tp"), *SMALL)
    assert code == EXIT_FAILED, out
    assert "NTK slope" in out and "NNGP slope" not in out


def test_inputs_files_and_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    # cnn1d: an indexed input (N, 8, d), and closed-form kernels that compile fast.
    np.save(tmp_path / "a.npy", rng.normal(size=(3, 8, 2)))
    np.save(tmp_path / "b.npy", rng.normal(size=(2, 8, 2)))
    png = tmp_path / "rate.png"
    code, out, _ = run(
        capsys,
        str(EXAMPLES / "cnn1d.tp"),
        "--x",
        str(tmp_path / "a.npy"),
        "--x2",
        str(tmp_path / "b.npy"),
        "--widths",
        "32,64",
        "--seeds",
        "2",
        "--plot",
        str(png),
        "--float32",
    )
    assert code in (0, EXIT_FAILED)  # two tiny widths: the verdict itself is not the point
    assert "float32" in out and f"wrote {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--widths", "256"], "at least two distinct"),
        (["--widths", "a,b"], "comma-separated integers"),
        (["--seeds", "1"], "at least 2"),
        (["--x", "/nonexistent.npy"], "--x /nonexistent.npy: no such file"),
    ],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, _, err = run(capsys, str(EXAMPLES / "mlp.tp"), *args)
    assert code == 1 and message in err


def test_plot_without_matplotlib(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    code, _, err = run(capsys, str(EXAMPLES / "mlp.tp"), "--plot", str(tmp_path / "p.png"))
    assert code == 1
    assert "pip install tpcompile[plot]" in err
