"""Analyses of finished runs and what-if inputs: what a GEP account is used for.

* :mod:`.scenario`: land-cover scenario edits (polygons converting classes) applied to the run's land cover;
* :mod:`.change`: ``gep compare``, two runs (b − a): Δ rasters, change tables, growth;
* :mod:`.offset`: ``gep offset``, the GEP-R offset (占补平衡) of a development parcel and its compensation;
* :mod:`.vep`: ``gep vep``, VEP accounts of special units (特定地域单元) with an NPV projection;
* :mod:`.sensitivity`: ``gep sensitivity``, low/central/high accounts over documented price/parameter ranges.
"""
