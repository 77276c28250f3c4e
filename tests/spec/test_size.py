"""The instance count before expansion (spec/size.py) is exactly what expansion makes.

If the count drifted from the expansion, the limit would refuse specs that fit or let through
specs that do not: every shape of sweep is counted and then expanded, and the two must agree.
"""

from __future__ import annotations

import networkx as nx
import pytest
from spec_helpers import params, step, study

from reconciler.spec import SpecError, load_study_text
from reconciler.spec.build import build_study
from reconciler.spec.check import Edge
from reconciler.spec.diagnostics import Collector
from reconciler.spec.load import load_text
from reconciler.spec.pgen import ParameterSet, from_spec
from reconciler.spec.size import combos, measure

SHAPES = {
    "no parameters": study(step("a"), step("b", depends="[a]")),
    "one sweep and a funnel": study(
        step("a", "echo $(P)"),
        step("b", "echo b", depends="[a]"),
        step("c", "echo c", depends="[b_*]"),
        after=params(P=("[1, 2, 3, 4]", "P.%%")),
    ),
    "duplicate label rows collapse": study(
        step("a", "echo $(P)"),
        step("b", "echo $(P) $(Q)"),
        after=params(P=("[1, 1, 2, 2]", "P.%%"), Q=("[x, y, x, y]", "Q.%%")),
    ),
    "a swept funnel": study(
        step("a", "echo $(P)"),
        step("b", "echo $(Q)", depends="[a_*]"),
        after=params(P=("[1, 2, 3]", "P.%%"), Q=("[a, b, a]", "Q.%%")),
    ),
    "parameters through a workspace": study(
        step("a", "echo $(P)"),
        step("b", "cat $(a.workspace)/x", depends="[a]"),
        after=params(P=("[1, 2]", "P.%%")),
    ),
}


@pytest.mark.parametrize("name", SHAPES)
def test_the_count_is_what_expansion_makes(name: str) -> None:
    text = SHAPES[name]
    s = load_study_text(text, "s.yaml")
    loaded = load_text(text, "s.yaml", Collector("s.yaml"))
    assert loaded is not None
    # the same count, taken the way build_study takes it
    study_again = build_study(loaded, "s.yaml", Collector("s.yaml"), max_instances=None)
    assert len(study_again.instances) == len(s.instances)
    by_step: dict[str, int] = {}
    for i in s.instances:
        by_step[i.step] = by_step.get(i.step, 0) + 1
    used = {i.step: tuple(sorted(i.params)) for i in s.instances}
    edges = {
        st: [Edge(a, bool(d.get("funnel"))) for a, _, d in s.step_graph.in_edges(st, data=True)]
        for st in s.step_graph.nodes
    }
    order = list(nx.topological_sort(s.step_graph))
    size = measure(from_spec(s.spec.parameters), used, edges, order, 10**6)
    assert size.per_step == by_step
    assert size.instances == len(s.instances)
    assert size.dependencies == s.graph.number_of_edges()


def test_limit_is_exact() -> None:
    text = SHAPES["one sweep and a funnel"]  # 4 + 4 + 1 = 9 instances
    assert len(load_study_text(text, "s.yaml", max_instances=9).instances) == 9
    with pytest.raises(SpecError) as info:
        load_study_text(text, "s.yaml", max_instances=8)
    (d,) = info.value.diagnostics
    assert "9 instances, more than the limit of 8 (step 'a' alone has 4)" in d.message
    assert (d.line, d.col) == (5, 9)  # the name of step 'a'


def test_combos_keep_the_first_row_of_each_label_in_order() -> None:
    ps = ParameterSet(
        values={"P": [1, 1, 2, 3, 2], "Q": ["x", "x", "y", "z", "w"]},
        labels={"P": ["P.1", "P.1", "P.2", "P.3", "P.2"], "Q": ["x", "x", "y", "z", "w"]},
        names={"P": "P", "Q": "Q"},
    )
    assert combos(ps, ("P",)) == {("P.1",): 0, ("P.2",): 2, ("P.3",): 3}
    assert list(combos(ps, ("P", "Q"))) == [("P.1", "x"), ("P.2", "y"), ("P.3", "z"), ("P.2", "w")]
    assert combos(ps, ()) == {(): -1}
