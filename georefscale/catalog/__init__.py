"""Reference catalog: index GeoTIFF archives as stac-geoparquet and pick references by AOI and time.

>>> from georefscale.catalog import Catalog
>>> cat = Catalog.load("catalogs/naip.parquet")
>>> cat.query("-99.17,47.01,-99.14,47.03", before="2020-08-31").best.record.id
'm_4709963_se_14_1_20190904'
"""

from georefscale.catalog.core import Catalog, CatalogWarning
from georefscale.catalog.ingest import IngestResult, IngestWarning, expand_sources, ingest
from georefscale.catalog.query import Candidate, QueryResult, parse_aoi
from georefscale.catalog.records import (
    Band,
    Record,
    file_checksum,
    parse_datetime,
    record_from_raster,
)

__all__ = [
    "Band",
    "Candidate",
    "Catalog",
    "CatalogWarning",
    "IngestResult",
    "IngestWarning",
    "QueryResult",
    "Record",
    "expand_sources",
    "file_checksum",
    "ingest",
    "parse_aoi",
    "parse_datetime",
    "record_from_raster",
]
