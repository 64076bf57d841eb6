"""What a run writes and how it is described: writers, the resumable block store, figures, provenance.

* :mod:`.io_write`: atomic COG / block tile / VRT / CSV / GPKG / JSON writers;
* :mod:`.block_store`: resumable per-block output store (tiles + journal of per-block sums), published as VRT or COG;
* :mod:`.figures`: the PNG map of GEP-R density and the service bar chart;
* :mod:`.provenance`: package versions, input checksums, stage timer.

None of them imports a service (``tests/test_architecture.py``).
"""
