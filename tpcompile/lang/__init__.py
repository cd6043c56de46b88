"""The front end: `.tp` text -> syntax tree -> typed IR. Never imports JAX.

`tp.lark` (the grammar), `parse.py` (Lark tree -> `syntax.py` nodes, syntax errors), the
elaborator (`elaborate.py` statements and names, `expressions.py` evaluation, `values.py` meanings
and the IR builder), `builtins.py` (the language's view of the nonlinearity records of `prims/`)
and `frontend.py` (the whole front end as one call, with error context).
"""
