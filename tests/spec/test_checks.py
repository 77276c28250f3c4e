"""The stricter checks: each mistake is reported once, in our words, at its exact line:col."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from spec_helpers import HEAD, at, only, params, step, study

from reconciler.spec import Diagnostic, SpecError, Study, load_study, load_study_text

Reject = Callable[..., list[Diagnostic]]
Load = Callable[..., Study]

ONE_STEP = "study:\n- name: a\n  description: x\n  run:\n    cmd: echo\n"


# ---- unknown keys -----------------------------------------------------------------------


def test_unknown_top_level_key_is_an_error(reject: Reject) -> None:
    d = only(reject(HEAD + "bogus: 1\n" + ONE_STEP))
    assert at(d) == (4, 1)
    assert "unknown top-level key 'bogus'" in d.message
    assert "reconcile" in d.message  # the known keys are listed


def test_unknown_batch_key_is_only_a_warning(load: Load) -> None:
    s = load(HEAD + "batch:\n  type: local\n  weird: 1\n" + ONE_STEP)
    assert [i.name for i in s.instances] == ["a"]
    assert len(s.warnings) == 1
    assert ":6:3: warning: batch key 'weird'" in s.warnings[0]


def test_unknown_run_key(reject: Reject) -> None:
    d = only(reject(HEAD + ONE_STEP + "    cmdd: 1\n"))
    assert at(d) == (9, 5)
    assert d.message == "unknown key 'cmdd' in run of study step 'a'"


def test_unknown_step_key(reject: Reject) -> None:
    text = HEAD + "study:\n- name: a\n  description: x\n  foo: 2\n  run:\n    cmd: echo\n"
    d = only(reject(text))
    assert at(d) == (7, 3)
    assert d.message == "unknown key 'foo' in study step 'a'"


def test_unknown_env_key(reject: Reject) -> None:
    d = only(reject(HEAD + "env:\n  variables: {A: 1}\n  varz: {}\n" + ONE_STEP))
    assert at(d) == (6, 3)
    assert d.message == "unknown key 'varz' in env"


def test_unknown_parameter_key(reject: Reject) -> None:
    text = study(step("a", cmd="echo $(P)")) + (
        "global.parameters:\n  P:\n    values: [1]\n    label: P.%%\n    extra: 2\n"
    )
    d = only(reject(text))
    assert at(d) == (13, 5)
    assert d.message == "unknown key 'extra' in global.parameters.P"


def test_unknown_reconcile_key(reject: Reject) -> None:
    d = only(reject(HEAD + "reconcile:\n  prune: true\n  retry: 3\n" + ONE_STEP))
    assert at(d) == (6, 3)
    assert "unknown key 'retry' in reconcile" in d.message


# ---- steps and dependencies -------------------------------------------------------------


def test_duplicate_step_name(reject: Reject) -> None:
    d = only(reject(study(step("a"), step("b"), step("a"))))
    assert at(d) == (13, 9)
    assert "duplicate step name 'a' (first defined on line 5)" in d.message


def test_depends_on_a_missing_step_suggests_the_close_name(reject: Reject) -> None:
    d = only(reject(study(step("build"), step("run", depends="[biuld]"))))
    assert at(d) == (13, 15)
    assert d.message == (
        "step 'run' depends on 'biuld', but no step is named 'biuld' (did you mean 'build'?)"
    )


def test_funnel_on_a_missing_step(reject: Reject) -> None:
    d = only(reject(study(step("build"), step("run", depends="[biuld_*]"))))
    assert at(d) == (13, 15)
    assert "depends on 'biuld_*', but no step is named 'biuld'" in d.message
    assert "did you mean 'build'?" in d.message


def test_depends_on_a_missing_step_without_a_close_name(reject: Reject) -> None:
    d = only(reject(study(step("build"), step("run", depends="[zzzzzz]"))))
    assert "no step is named 'zzzzzz'" in d.message
    assert "did you mean" not in d.message


def test_same_dependency_twice(reject: Reject) -> None:
    d = only(reject(study(step("a"), step("b", depends="[a, a]"))))
    assert at(d) == (13, 18)
    assert "lists 'a' twice in depends" in d.message


def test_two_step_cycle_names_the_cycle(reject: Reject) -> None:
    d = only(reject(study(step("a", depends="[b]"), step("b", depends="[a]"))))
    assert at(d) == (9, 14)  # the depends of the first step on the cycle
    assert d.message == "dependency cycle: a → b → a"


def test_three_step_cycle_names_every_step(reject: Reject) -> None:
    text = study(step("a", depends="[c]"), step("b", depends="[a]"), step("c", depends="[b]"))
    d = only(reject(text))
    assert d.message == "dependency cycle: a → b → c → a"


def test_self_dependency_is_a_cycle(reject: Reject) -> None:
    d = only(reject(study(step("a", depends="[a]"))))
    assert d.message == "dependency cycle: a → a"


def test_cycle_reaching_through_a_funnel(reject: Reject) -> None:
    d = only(reject(study(step("a", depends="[b_*]"), step("b", depends="[a]"))))
    assert d.message == "dependency cycle: a → b → a"


# ---- tokens -----------------------------------------------------------------------------


def test_unresolved_token(reject: Reject) -> None:
    d = only(reject(study(step("a", cmd="echo $(NOPE)"))))
    assert at(d) == (8, 15)  # the token itself, not the start of the value
    assert "$(NOPE) in cmd of step 'a' is not a variable, label, parameter" in d.message
    assert "--pgen" in d.message  # no parameters at all: perhaps a generator provides it


def test_unresolved_lowercase_token_hints_at_shell_substitution(reject: Reject) -> None:
    d = only(reject(study(step("a", cmd="echo $(date)"))))
    assert "$(date)" in d.message
    assert "'$( date )'" in d.message


@pytest.mark.parametrize("key", ["restart", "walltime", "qos", "bind"])
def test_unresolved_token_in_other_run_fields(reject: Reject, key: str) -> None:
    d = only(reject(study(step("a", more=f"    {key}: $(NOPE)\n"))))
    assert at(d) == (9, 5 + len(key) + 2)
    assert f"$(NOPE) in {key} of step 'a'" in d.message


def test_unresolved_token_in_description(reject: Reject) -> None:
    text = HEAD + "study:\n- name: a\n  description: uses $(NOPE)\n  run:\n    cmd: echo\n"
    d = only(reject(text))
    assert at(d) == (6, 16)
    assert "$(NOPE) in description of step 'a'" in d.message


def test_token_inside_shell_single_quotes_is_not_reported(load: Load) -> None:
    s = load(study(step("a", cmd="\"sed -i 's/^CXX = $(MPICXX)/CXX = g++/' Makefile\"")))
    assert s.instances[0].cmd == "sed -i 's/^CXX = $(MPICXX)/CXX = g++/' Makefile"


def test_token_inside_double_quotes_is_reported(reject: Reject) -> None:
    d = only(reject(study(step("a", cmd="'echo \"$(NOPE)\"'"))))
    assert "$(NOPE)" in d.message


def test_single_quote_inside_double_quotes_does_not_hide_a_token(reject: Reject) -> None:
    d = only(reject(study(step("a", cmd="'echo \"it''s $(NOPE)\"'"))))
    assert "$(NOPE)" in d.message


def test_unresolved_token_in_multiline_block_is_placed_on_its_line(reject: Reject) -> None:
    text = study(step("a", cmd="|\n      echo one\n      echo two\n      echo $(NOPE) three"))
    d = only(reject(text))
    assert at(d) == (11, 12)


def test_unresolved_token_in_one_line_block_is_placed_on_its_line(reject: Reject) -> None:
    d = only(reject(study(step("a", cmd="|\n      echo $(NOPE)"))))
    assert d.line == 9  # the token's line, not the `cmd: |` line (8)


def test_unresolved_token_in_block_has_the_token_column(reject: Reject) -> None:
    d = only(reject(study(step("a", cmd="|\n      echo one\n      $(NOPE) two"))))
    assert at(d) == (10, 7)


def test_workspace_of_a_non_ancestor(reject: Reject) -> None:
    d = only(reject(study(step("a"), step("b", cmd="ls $(a.workspace)"))))
    assert at(d) == (12, 13)  # the token itself
    assert "step 'b' uses $(a.workspace) but does not depend on 'a'" in d.message
    assert "add 'a' to its depends" in d.message


def test_workspace_of_a_grandparent_is_fine(load: Load) -> None:
    s = load(
        study(
            step("a"), step("b", depends="[a]"), step("c", cmd="ls $(a.workspace)", depends="[b]")
        )
    )
    assert s.by_name()["c"].cmd == "ls $(OUTPUT_PATH)/a"


def test_workspace_of_no_step(reject: Reject) -> None:
    d = only(reject(study(step("a"), step("b", cmd="ls $(zz.workspace)"))))
    assert d.message == "$(zz.workspace) in step 'b' names no step"


# ---- parameters -------------------------------------------------------------------------


def test_parameter_lists_of_different_lengths(reject: Reject) -> None:
    text = study(
        step("a", cmd="echo $(SIZE) $(ITER)"),
        after=params(SIZE=("[1, 2]", "SIZE.%%"), ITER=("[1, 2, 3]", "ITER.%%")),
    )
    d = only(reject(text))
    assert at(d) == (9, 1)
    assert "same number of values" in d.message
    assert "SIZE has 2, ITER has 3" in d.message


@pytest.mark.parametrize(
    ("values", "label", "shown"),
    [("[a/b, c]", "X.%%", "'X.a/b'"), ("['..', c]", "'%%'", "'..'"), ("[., c]", "'%%'", "'.'")],
)
def test_parameter_label_that_escapes(reject: Reject, values: str, label: str, shown: str) -> None:
    d = only(reject(study(step("a", cmd="echo $(X)"), after=params(X=(values, label)))))
    assert at(d) == (12, 12)
    assert f"gives label {shown}, which would escape its workspace directory" in d.message


def test_parameter_values_that_collide_after_sanitising(reject: Reject) -> None:
    d = only(reject(study(step("a", cmd="echo $(X)"), after=params(X=("['a b', a_b]", "X.%%")))))
    assert at(d) == (12, 12)
    assert "values 'a b' and 'a_b' both get the directory name 'X.a_b'" in d.message


def test_label_without_percent_makes_values_collide(reject: Reject) -> None:
    d = only(reject(study(step("a", cmd="echo $(X)"), after=params(X=("[1, 2]", "X")))))
    assert "values '1' and '2' both get the directory name 'X'" in d.message
    assert "'%%'" in d.message


def test_label_with_nothing_usable(reject: Reject) -> None:
    d = only(reject(study(step("a", cmd="echo $(X)"), after=params(X=("['#!', ok]", "'%%'")))))
    assert "has no character usable in a directory name" in d.message


def test_repeated_values_are_not_a_collision(load: Load) -> None:
    s = load(study(step("a", cmd="echo $(X)"), after=params(X=("[1, 1, 2]", "X.%%"))))
    assert [i.name for i in s.instances] == ["a_X.1", "a_X.2"]


def test_empty_values_list(reject: Reject) -> None:
    d = only(reject(study(step("a", cmd="echo $(X)"), after=params(X=("[]", "X.%%")))))
    assert at(d) == (11, 13)
    assert "global.parameters.X.values must be a non-empty list of values" in d.message


# ---- step names -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a/b", "'..'", "'.hidden'", "'a b'", "'a:b'", "-x"])
def test_step_name_that_is_not_a_directory_name(reject: Reject, name: str) -> None:
    d = only(reject(study(step(name))))
    assert at(d) == (5, 9)
    assert "cannot be used as a directory name" in d.message


def test_step_name_ending_in_workspace(reject: Reject) -> None:
    d = only(reject(study(step("a.workspace"))))
    assert "cannot be used as a directory name" in d.message


def test_step_names_with_maestro_punctuation_are_fine(load: Load) -> None:
    s = load(study(step("run-lulesh"), step("post.process_1", depends="[run-lulesh]")))
    assert [i.name for i in s.instances] == ["run-lulesh", "post.process_1"]


def test_step_names_with_parentheses_are_refused(reject: Reject) -> None:
    # `$(post(1).workspace)` could never name such a step: the token would reach bash as text.
    d = only(reject(study(step("post(1)"))))
    assert "cannot be used as a directory name" in d.message


# ---- variables and names ----------------------------------------------------------------


def test_variable_cycle(reject: Reject) -> None:
    text = study(
        step("a", cmd="echo $(A)"),
        before="env:\n  variables:\n    A: $(B)-x\n    B: $(C)-y\n    C: $(A)-z\n",
    )
    found = reject(text)
    cycle = [d for d in found if d.message.startswith("variable cycle")]
    assert len(cycle) == 1
    assert cycle[0].message == "variable cycle: $(A) → $(B) → $(C) → $(A)"
    assert at(cycle[0]) == (6, 8)


def test_variable_referring_to_itself(reject: Reject) -> None:
    found = reject(study(step("a", cmd="echo $(A)"), before="env:\n  variables:\n    A: x$(A)\n"))
    assert any(d.message == "variable cycle: $(A) → $(A)" for d in found)


def test_variable_cycle_is_reported_once(reject: Reject) -> None:
    before = "env:\n  variables:\n    A: $(B)\n    B: $(A)\n"
    text = study(step("a", cmd="echo $(A)"), before=before)
    only(reject(text))


def test_variable_and_parameter_share_a_name(reject: Reject) -> None:
    text = study(
        step("a", cmd="echo $(X)"),
        before="env:\n  variables:\n    X: 1\n",
        after=params(X=("[1]", "X.%%")),
    )
    d = only(reject(text))
    assert at(d) == (13, 3)
    assert "the parameter name 'X' is already taken by a variable" in d.message


def test_variable_and_dependency_share_a_name(reject: Reject) -> None:
    before = (
        "env:\n  variables:\n    D: 1\n  dependencies:\n    paths:\n"
        "      - name: D\n        path: /tmp\n"
    )
    d = only(reject(study(step("a", cmd="echo $(D)"), before=before)))
    assert at(d) == (9, 9)
    assert "the dependency name 'D' is already taken by a variable" in d.message


def test_two_dependencies_share_a_name(reject: Reject) -> None:
    before = (
        "env:\n  dependencies:\n    paths:\n      - name: D\n        path: /a\n"
        "    git:\n      - name: D\n        path: /b\n        url: https://x/y.git\n"
    )
    d = only(reject(study(step("a", cmd="echo $(D)"), before=before)))
    assert at(d) == (10, 9)
    assert "the dependency name 'D' is already taken by a dependency" in d.message


def test_label_and_parameter_share_a_name(reject: Reject) -> None:
    text = study(
        step("a", cmd="echo $(X)"),
        before="env:\n  labels:\n    X: $(X)\n",
        after=params(X=("[1]", "X.%%")),
    )
    found = reject(text)
    assert any("the parameter name 'X' is already taken by a label" in d.message for d in found)


def test_variable_and_label_share_a_name(reject: Reject) -> None:
    text = study(
        step("a", cmd="echo $(A)"), before="env:\n  variables:\n    A: 1\n  labels:\n    A: 2\n"
    )
    found = reject(text)
    assert all(at(d) == (8, 5) for d in found)
    assert any("'A'" in d.message and "variable" in d.message for d in found)


def test_variable_and_label_clash_is_reported_once(reject: Reject) -> None:
    text = study(
        step("a", cmd="echo $(A)"), before="env:\n  variables:\n    A: 1\n  labels:\n    A: 2\n"
    )
    only(reject(text))


# ---- numeric fields ---------------------------------------------------------------------


def test_numeric_field_resolving_to_a_non_integer(reject: Reject) -> None:
    text = study(step("a", more="    nodes: $(N)\n"), before="env:\n  variables:\n    N: two\n")
    d = only(reject(text))
    assert at(d) == (12, 12)
    assert d.message == "nodes of step 'a' is 'two' after substitution, not an integer"


def test_numeric_field_resolving_below_one(reject: Reject) -> None:
    text = study(step("a", more="    procs: $(N)\n"), before="env:\n  variables:\n    N: 0\n")
    d = only(reject(text))
    assert "procs of step 'a' is 0 after substitution; it must be ≥ 1" in d.message


def test_numeric_field_from_a_parameter_with_a_bad_value(reject: Reject) -> None:
    text = study(
        step("a", cmd="echo $(N)", more="    cores per task: $(N)\n"),
        after=params(N=("[2, x]", "N.%%")),
    )
    d = only(reject(text))
    assert at(d) == (9, 21)
    assert "cores per task of step 'a' is 'x' after substitution" in d.message


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        ("nodes: 0", "an integer ≥ 1 or '$(VAR)'"),
        ("gpus: -1", "an integer ≥ 0"),
        ("nodes: $(N", "an integer ≥ 1"),
        ("priority: urgent", "one of HELD"),
        ("exclusive: maybe", "true, false"),
    ],
)
def test_literal_resource_values_are_checked(reject: Reject, line: str, expect: str) -> None:
    d = only(reject(study(step("a", more=f"    {line}\n"))))
    key = line.split(":")[0]
    assert at(d) == (9, 5 + len(key) + 2)
    assert f"{key} of study step 'a' must be" in d.message
    assert expect in d.message


# ---- launcher tokens --------------------------------------------------------------------


def test_launcher_asks_for_more_procs_and_nodes_than_the_step_has(reject: Reject) -> None:
    found = reject(
        study(step("a", cmd="'$(LAUNCHER)[2n, 8p] ./sim'", more="    nodes: 1\n    procs: 4\n"))
    )
    assert [at(d) for d in found] == [(8, 10), (8, 10)]
    messages = {d.message for d in found}
    assert (
        "step 'a': the launcher tokens ask for 8 processes in all, more than the step's procs: 4"
    ) in messages
    assert (
        "step 'a': the launcher tokens ask for 2 nodes in all, more than the step's nodes: 1"
    ) in messages


def test_launcher_totals_over_several_tokens(reject: Reject) -> None:
    cmd = "|\n      $(LAUNCHER)[3p] ./a\n      $(LAUNCHER)[3p] ./b"
    d = only(reject(study(step("a", cmd=cmd, more="    nodes: 1\n    procs: 4\n"))))
    assert "ask for 6 processes in all" in d.message


def test_launcher_totals_within_the_allocation_are_fine(load: Load) -> None:
    cmd = "|\n      $(LAUNCHER)[2p] ./a\n      $(LAUNCHER)[2p] ./b"
    s = load(study(step("a", cmd=cmd, more="    nodes: 1\n    procs: 4\n")))
    assert len(s.instances) == 1


def test_launcher_without_process_count(reject: Reject) -> None:
    d = only(
        reject(study(step("a", cmd="'$(LAUNCHER)[2n] ./sim'", more="    nodes: 2\n    procs: 4\n")))
    )
    assert "'$(LAUNCHER)[2n]' needs a process count such as '4p'" in d.message


def test_launcher_with_garbage_allocation(reject: Reject) -> None:
    d = only(reject(study(step("a", cmd="'$(LAUNCHER)[lots] ./sim'", more="    procs: 4\n"))))
    assert "is not a launcher allocation" in d.message


def test_sized_launcher_on_a_step_without_procs(reject: Reject) -> None:
    d = only(reject(study(step("a", cmd="'$(LAUNCHER)[2p] ./sim'", more="    nodes: 1\n"))))
    assert "the step sets no 'procs'" in d.message


# ---- YAML input -------------------------------------------------------------------------


def test_yaml_syntax_error_position(reject: Reject) -> None:
    text = HEAD + "study:\n- name: a\n  description: x\n  run:\n    cmd: echo\n   bad: [\n"
    d = only(reject(text))
    assert d.message.startswith("YAML syntax error")
    assert at(d) == (9, 4)


def test_yaml_unclosed_flow_sequence(reject: Reject) -> None:
    d = only(reject(HEAD + "study:\n  - name: a\n    description: [oops\n"))
    assert d.message.startswith("YAML syntax error")
    assert "flow sequence" in d.message
    assert d.line >= 6


def test_tab_indentation(reject: Reject) -> None:
    d = only(reject(HEAD + "study:\n- name: a\n\tdescription: x\n"))
    assert d.message.startswith("YAML syntax error")
    assert d.line == 6


def test_duplicate_yaml_key(reject: Reject) -> None:
    d = only(reject(HEAD + "study:\n- name: a\n  name: b\n  description: x\n  run: {cmd: echo}\n"))
    assert at(d) == (6, 3)
    assert d.message == "YAML syntax error: duplicate key 'name'"


def test_duplicate_top_level_key(reject: Reject) -> None:
    d = only(reject(HEAD + ONE_STEP + "description:\n  name: u\n  description: again\n"))
    assert d.line == 9
    assert "duplicate key 'description'" in d.message


def test_non_utf8_byte_position(reject: Reject) -> None:
    raw = (HEAD + "study:\n- name: a\n  description: caf\xe9\n").encode("latin-1")
    d = only(reject(raw))
    assert at(d) == (6, 19)
    assert d.message == "the file is not UTF-8 text (byte 0xe9)"


def test_utf8_bom_is_accepted(load: Load) -> None:
    s = load(("\ufeff" + HEAD + ONE_STEP).encode())
    assert s.name == "t"


def _laughs(levels: int) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return HEAD + ONE_STEP + "\n".join(lines) + "\n"


def test_billion_laughs_is_rejected(reject: Reject) -> None:
    d = only(reject(_laughs(9)))  # a hang is caught by the suite's timeout, not a clock here
    assert "alias bomb" in d.message
    assert at(d) == (1, 1)


def test_shared_aliases_below_the_limit_are_fine(load: Load) -> None:
    text = HEAD + "study:\n- name: a\n  description: x\n  run: &r {cmd: echo hi}\n"
    text += "- name: b\n  description: y\n  run: *r\n"
    s = load(text)
    assert [i.cmd for i in s.instances] == ["echo hi", "echo hi"]


def test_deeply_nested_flow_document(reject: Reject) -> None:
    d = only(reject(HEAD + ONE_STEP + "deep: " + "[" * 200 + "]" * 200 + "\n"))
    assert "nested more than 100 levels deep" in d.message


def test_deeply_nested_block_document(reject: Reject) -> None:
    nested = "".join("  " * i + f"k{i}:\n" for i in range(200))
    d = only(reject(HEAD + ONE_STEP + nested))
    assert "nested more than 100 levels deep" in d.message


@pytest.mark.parametrize(
    ("text", "kind"), [("", "empty"), ("- a\n- b\n", "a list"), ("just text\n", "a str")]
)
def test_a_spec_that_is_not_a_mapping(reject: Reject, text: str, kind: str) -> None:
    d = only(reject(text))
    assert f"this is {kind}" in d.message


def test_unreadable_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_study(tmp_path / "missing.yaml")
    assert "cannot read the spec" in str(info.value)


def test_yaml_1_1_booleans_as_maestro_reads_them(load: Load) -> None:
    s = load(study(step("a", more="    exclusive: yes\n    nested: off\n")))
    assert s.instances[0].resources.exclusive is True
    assert s.instances[0].resources.nested is False


def test_parameter_named_y_is_a_string_as_in_maestro(load: Load) -> None:
    # PyYAML's YAML 1.1 reads y/Y/n/N as strings (only yes/no/on/off/true/false are booleans)
    s = load(study(step("sy", cmd="echo $(Y)"), after=params(Y=("[a, n]", "Y.%%"))))
    assert [i.name for i in s.instances] == ["sy_Y.a", "sy_Y.n"]


# ---- all errors of a file at once -------------------------------------------------------


def test_three_check_errors_are_reported_together(reject: Reject) -> None:
    text = study(step("a"), step("a"), step("b", cmd="echo $(NOPE)", depends="[c]"))
    found = reject(text)
    assert len(found) == 3
    assert [d.line for d in found] == sorted(d.line for d in found)
    joined = "\n".join(d.message for d in found)
    assert "duplicate step name 'a'" in joined
    assert "no step is named 'c'" in joined
    assert "$(NOPE)" in joined


def test_three_schema_errors_are_reported_together(reject: Reject) -> None:
    text = HEAD + (
        "study:\n- name: a\n  run:\n    cmd: echo\n    nodes: 0\n"
        "- name: b\n  description: y\n  run:\n    cmd: echo\n    bogus: 1\n"
    )
    found = reject(text)
    assert [at(d) for d in found] == [(5, 3), (8, 12), (13, 5)]


def test_schema_and_check_errors_are_reported_together(reject: Reject) -> None:
    text = study(step("a", depends="[nope]"), step("b", cmd="echo $(ZZZ)"), before="bogus: 1\n")
    assert len(reject(text)) == 3


def test_error_string_is_file_line_col_message(spec: Callable[..., Path]) -> None:
    path = spec(study(step("a", cmd="echo $(NOPE)")))
    with pytest.raises(SpecError) as info:
        load_study(path)
    assert str(info.value).startswith(f"{path}:8:15: $(NOPE) in cmd of step 'a'")


def test_load_study_text_names_the_given_file() -> None:
    with pytest.raises(SpecError) as info:
        load_study_text(study(step("a", cmd="echo $(NOPE)")), "specs/x.yaml")
    assert str(info.value).startswith("specs/x.yaml:8:15: ")


def test_pre_and_post_are_accepted_with_a_warning(load: Load) -> None:
    s = load(study(step("a", more="    pre: echo pre\n    post: echo post\n")))
    assert len(s.warnings) == 2
    assert all("accepted for Maestro compatibility" in w for w in s.warnings)


def test_bad_walltime(reject: Reject) -> None:
    d = only(reject(study(step("a", more="    walltime: 1h\n"))))
    assert at(d) == (9, 15)
    assert "walltime '1h' is not a duration" in d.message


# ---- study names (spec/names.py: the one rule for validate, run and GitOps) ----------------


def _named(name: str) -> str:
    return f'description:\n  name: "{name}"\n  description: d\n' + ONE_STEP


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("x" * 240, "is 240 bytes long"),
        ("é" * 120, "is 240 bytes long"),  # bytes, not characters
        ("a\\0b", "U+0000"),
        ("a\\tb", "U+0009"),
        ("a\\u2028b", "U+2028"),
        ("a\\u200bb", "U+200B"),
    ],
)
def test_a_study_name_must_fit_a_file_name_and_print_cleanly(
    reject: Reject, name: str, says: str
) -> None:
    d = only(reject(_named(name)))
    assert at(d) == (2, 9) and d.message.startswith("description.name") and says in d.message


@pytest.mark.parametrize(
    "name", ["x" * 239, "../../../x", "/abs", "my study", "café", "a.b", "..", "///", "日本語"]
)
def test_names_maestro_takes_are_still_taken(load: Load, name: str) -> None:
    assert load(_named(name)).name == name


def test_a_name_is_compared_in_nfc(load: Load) -> None:
    assert load(_named("cafe\u0301")).name == "caf\u00e9"
