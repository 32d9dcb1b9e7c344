"""Datasets: float32 NCHW images in [0, 1] with int64 labels, named by a spec ``FORMAT[:PATH]``.

Formats are a registry (:data:`advcli.data.formats.FORMATS`): one file per format in
``advcli/data/formats/``. Every problem with the input raises :class:`advcli.errors.DataError`
with one line naming the file and what is wrong.
"""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "Dataset": ".dataset",
    "make_dataset": ".dataset",
    "DEFAULT_DATA": ".spec",
    "load_dataset": ".spec",
    "parse_data_spec": ".spec",
    "default_cache_dir": ".spec",
    "select_samples": ".selection",
    "DataLimits": ".limits",
    "FORMATS": ".formats",
    "Format": ".formats",
    "generate_digits": ".formats.digits",
    "digit_fonts": ".formats.digits",
    "DIGITS_VERSION": ".formats.digits",
})

__all__ = ["Dataset", "make_dataset", "DEFAULT_DATA", "load_dataset", "parse_data_spec", "default_cache_dir",
           "select_samples", "DataLimits", "FORMATS", "Format", "generate_digits", "digit_fonts", "DIGITS_VERSION"]
