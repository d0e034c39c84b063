"""Calico's selector language, table-driven: what each form matches, and where a bad one fails.

The cited sentences are from Calico's reference, "Selectors" (docs.tigera.io, calico/latest/
reference/resources/networkpolicy#selectors).
"""

from __future__ import annotations

import pytest

from probe.errors import ManifestError
from probe.policy.calico_selector import SelectorError, parse_selector

LABELS = {"app": "db", "tier": "data", "projectcalico.org/namespace": "shop", "version": "v1.2"}


@pytest.mark.parametrize("selector, expected", [
    # "all()  Match all in-scope resources."
    ("all()", True),
    ("", True),
    # "k == 'v'  Matches resources with the label 'k' and value 'v'."
    ("app == 'db'", True),
    ('app == "api"', False),
    # "k != 'v'  Matches resources without label 'k' or with label 'k' and value not equal to v"
    ("app != 'api'", True),
    ("missing != 'x'", True),
    ("app != 'db'", False),
    # "has(k)  Matches resources with label 'k', independent of value."
    ("has(tier)", True),
    ("has(missing)", False),
    # "!has(k)  Matches resources without label 'k'"
    ("!has(missing)", True),
    ("!has(app)", False),
    # "k in { 'v1', 'v2' }  Matches resources with label 'k' and value in the given set"
    ("app in {'api', 'db'}", True),
    ("app in {}", False),
    # "k not in { 'v1', 'v2' }  Matches resources without label 'k' or with label 'k' and value not in the set"
    ("app not in {'api', 'web'}", True),
    ("missing not in {'x'}", True),
    ("app not in {'db'}", False),
    # "k contains 's'", "k starts with 's'", "k ends with 's'"
    ("version contains '1.'", True),
    ("version starts with 'v1'", True),
    ("version ends with '.3'", False),
    # "<expression> && <expression>  Matches resources that match both expressions"
    ("app == 'db' && tier == 'data'", True),
    ("app == 'db' && tier == 'web'", False),
    # "<expression> || <expression>  Matches resources that match either expression"
    ("app == 'api' || tier == 'data'", True),
    # "!<expression>  Matches resources that do not match the expression" + parentheses group
    ("!(app == 'api' || tier == 'web')", True),
    ("!app == 'db'", False),  # `!` negates the whole comparison after it
    # && binds tighter than ||
    ("app == 'api' && tier == 'x' || has(tier)", True),
    ("app == 'api' && (tier == 'x' || has(tier))", False),
    # Calico's automatic endpoint labels are ordinary keys
    ("projectcalico.org/namespace == 'shop'", True),
    # "global()  Match all non-namespaced resources" — never a pod
    ("global()", False),
])
def test_selector_matches(selector, expected):
    assert parse_selector(selector).matches(LABELS) is expected


@pytest.mark.parametrize("selector, column, expected", [
    ("app == ", 8, "a quoted string"),
    ("app = 'db'", 5, "unexpected character '='"),
    ("app == 'db", 8, "an unterminated string"),
    ("app == 'db' &&", 15, "a label key, has(), all() or '('"),
    ("(app == 'db'", 13, "')'"),
    ("app in {'a' 'b'}", 13, "',' or '}'"),
    ("app not 'x'", 9, "'in' after 'not'"),
    ("has(app", 8, "')'"),
    ("app 'db'", 5, "an operator after 'app'"),
    ("app == 'db' tier == 'x'", 13, "'&&', '||' or the end"),
])
def test_selector_errors_name_the_column(selector, column, expected):
    with pytest.raises(SelectorError) as err:
        parse_selector(selector)
    assert f"column {column}" in str(err.value) and expected in str(err.value)
    assert isinstance(err.value, ManifestError)  # exit 2, like every bad manifest


def test_a_selector_that_is_not_a_string_is_an_error():
    with pytest.raises(SelectorError, match="expected a selector string"):
        parse_selector({"matchLabels": {"app": "db"}})
