"""Custom parameter generators (--pgen): Maestro's API, pargs, and clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from spec_helpers import step, study

from reconciler.spec import SpecError, Study, load_study
from reconciler.spec.pgen import ParameterGenerator, PgenError, from_generator, run_pgen

Load = Callable[..., Study]

SPEC = study(
    step("sim", cmd="./sim $(SIZE) $(MODE)"),
    step("post", depends="[sim_*]"),
    before="env:\n  variables:\n    SMAX: 30\n    OUTPUT_PATH: ./out\n",
)

ECHO_PGEN = """
from maestrowf.datastructures.core import ParameterGenerator

SEEN = {}

def get_custom_generator(env, **kwargs):
    SEEN.update(kwargs)
    p = ParameterGenerator()
    top = int(env.find("SMAX").value)
    sizes = list(range(10, top + 1, 10))
    p.add_parameter("SIZE", sizes, "SIZE.%%")
    p.add_parameter("MODE", [kwargs["MODE"]] * len(sizes), "MODE.%%")
    return p
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parameter_generator_api() -> None:
    p = ParameterGenerator()
    assert not p
    p.add_parameter("SIZE", [10, 20], "SIZE.%%")
    p.add_parameter("ITER", [1, 2], ["first", "second"], name="iterations")
    assert p and len(p) == 2
    assert p.parameters == {"SIZE": [10, 20], "ITER": [1, 2]}
    assert p.labels == {"SIZE": "SIZE.%%", "ITER": ["first", "second"]}
    assert p.names == {"SIZE": "SIZE", "ITER": "iterations"}
    assert list(p.get_combinations()) == [{"SIZE": 10, "ITER": 1}, {"SIZE": 20, "ITER": 2}]
    ps = from_generator(p)
    assert ps.labels == {"SIZE": ["SIZE.10", "SIZE.20"], "ITER": ["first", "second"]}
    assert ps.rows == 2


def test_default_label() -> None:
    p = ParameterGenerator()
    p.add_parameter("N", [1])
    assert from_generator(p).labels == {"N": ["N.1"]}


def test_pgen_with_pargs_and_env(spec: Callable[..., Path], tmp_path: Path) -> None:
    pgen = write(tmp_path, "gen.py", ECHO_PGEN)
    path = spec(SPEC)
    s = load_study(path, pgen=pgen, pargs={"MODE": "fast"})
    assert [i.name for i in s.instances] == [
        "sim_MODE.fast.SIZE.10",
        "sim_MODE.fast.SIZE.20",
        "sim_MODE.fast.SIZE.30",
        "post",
    ]
    assert s.by_name()["sim_MODE.fast.SIZE.20"].cmd == "./sim 20 fast"
    assert s.by_name()["post"].depends == tuple(i.name for i in s.instances[:3])


def test_pargs_pass_through_unchanged(tmp_path: Path) -> None:
    pgen = write(
        tmp_path,
        "kwargs.py",
        """
from maestrowf.datastructures.core import ParameterGenerator

def get_custom_generator(env, **kwargs):
    p = ParameterGenerator()
    p.add_parameter("KW", [",".join(f"{k}={v}" for k, v in sorted(kwargs.items()))], "KW.x")
    return p
""",
    )
    got = run_pgen(pgen, {}, {"MODE": "m", "N": "3", "OUTPUT_PATH": "/o", "SPECROOT": "/s"})
    assert got.values == {"KW": ["MODE=m,N=3,OUTPUT_PATH=/o,SPECROOT=/s"]}


def test_load_study_passes_specroot_and_output_path(
    spec: Callable[..., Path], tmp_path: Path
) -> None:
    pgen = write(
        tmp_path,
        "record.py",
        """
from maestrowf.datastructures.core import ParameterGenerator

def get_custom_generator(env, **kwargs):
    p = ParameterGenerator()
    p.add_parameter("SIZE", [kwargs["SPECROOT"]], "SIZE.root")
    p.add_parameter("MODE", [kwargs["OUTPUT_PATH"]], "MODE.out")
    return p
""",
    )
    path = spec(SPEC, name="sub/spec.yaml")
    s = load_study(path, pgen=pgen)
    assert s.instances[0].params == {"SIZE": str(path.parent.resolve()), "MODE": "./out"}


def test_pgen_list_labels_and_display_names(spec: Callable[..., Path], tmp_path: Path) -> None:
    pgen = write(
        tmp_path,
        "named.py",
        """
from maestrowf.datastructures.core import ParameterGenerator

def get_custom_generator(env, **kwargs):
    p = ParameterGenerator()
    p.add_parameter("SIZE", [1, 2], ["small", "large"], name="problem_size")
    p.add_parameter("MODE", ["a", "b"], "MODE.%%")
    return p
""",
    )
    s = load_study(spec(study(step("sim", cmd="'echo $(SIZE.name)=$(SIZE) $(MODE)'"))), pgen=pgen)
    assert [(i.name, i.cmd) for i in s.instances] == [
        ("sim_MODE.a.small", "echo problem_size=1 a"),
        ("sim_MODE.b.large", "echo problem_size=2 b"),
    ]


def test_global_parameters_are_ignored_with_a_warning(
    spec: Callable[..., Path], tmp_path: Path
) -> None:
    pgen = write(tmp_path, "gen.py", ECHO_PGEN)
    text = SPEC + "global.parameters:\n  OTHER:\n    values: [1]\n    label: O.%%\n"
    s = load_study(spec(text), pgen=pgen, pargs={"MODE": "m"})
    assert any("global.parameters is ignored" in w for w in s.warnings)
    assert all("OTHER" not in i.params for i in s.instances)


@pytest.mark.parametrize(
    ("source", "expect"),
    [
        (
            "def get_custom_generator(env, **kwargs):\n    raise ValueError('boom')\n",
            "the parameter generator raised ValueError: boom",
        ),
        (
            "def get_custom_generator(env, **kwargs):\n    return kwargs['MISSING']\n",
            "raised KeyError",
        ),
        ("x = 1\n", "defines no get_custom_generator(env, **kwargs)"),
        (
            "def get_custom_generator(env, **kwargs):\n    return 42\n",
            "did not return a ParameterGenerator",
        ),
        ("def get_custom_generator(env, **kwargs)\n", "raised SyntaxError"),
        ("import no_such_module_anywhere\n", "raised ModuleNotFoundError"),
    ],
)
def test_broken_pgen_is_a_clear_spec_error(
    spec: Callable[..., Path], tmp_path: Path, source: str, expect: str
) -> None:
    pgen = write(tmp_path, "broken.py", source)
    with pytest.raises(SpecError) as info:
        load_study(spec(SPEC), pgen=pgen)
    errors = [d for d in info.value.diagnostics if d.severity == "error"]
    assert len(errors) == 1
    assert str(pgen) in errors[0].message
    assert expect in errors[0].message
    assert "Traceback" not in str(info.value)


def test_missing_pgen_file(spec: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_study(spec(SPEC), pgen=tmp_path / "nope.py")
    assert "no such parameter generator file" in str(info.value)


def test_run_pgen_raises_pgen_error(tmp_path: Path) -> None:
    pgen = write(tmp_path, "bad.py", "def get_custom_generator(env, **kw):\n    1 / 0\n")
    with pytest.raises(PgenError, match="ZeroDivisionError"):
        run_pgen(pgen, {}, {})


def test_pgen_with_unequal_lengths_is_rejected(spec: Callable[..., Path], tmp_path: Path) -> None:
    pgen = write(
        tmp_path,
        "uneven.py",
        """
from maestrowf.datastructures.core import ParameterGenerator

def get_custom_generator(env, **kwargs):
    p = ParameterGenerator()
    p.add_parameter("SIZE", [1, 2], "SIZE.%%")
    p.add_parameter("MODE", [1, 2, 3], "MODE.%%")
    return p
""",
    )
    with pytest.raises(SpecError, match="same number of values"):
        load_study(spec(SPEC), pgen=pgen)


def test_spec_errors_come_before_running_the_pgen(
    spec: Callable[..., Path], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    pgen = write(
        tmp_path,
        "side.py",
        f"""
import pathlib
pathlib.Path({str(marker)!r}).write_text("ran")

def get_custom_generator(env, **kwargs):
    raise AssertionError("not reached")
""",
    )
    with pytest.raises(SpecError, match="unknown key 'bogus'"):
        load_study(spec(study(step("a", more="    bogus: 1\n"))), pgen=pgen)
    assert not marker.exists()
