"""Accounts of polygon layers: exact coverage, zonal sums, tables, nesting, economic allocation.

* :mod:`.zonal`: the coverage index of a layer (exact fractions, compact storage, block accumulation);
* :mod:`.layers`: polygon layers loaded on the grid, their account tables and nesting checks;
* :mod:`.economic`: provisioning and cultural statistics (EPV, ECV) allocated to pixels.
"""
