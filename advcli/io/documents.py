"""The schemas of the JSON advcli reads back: a run's ``model.json``, a resume state's ``resume.json``
and the ``advcli.*`` metadata of an exported ONNX file (:mod:`advcli.io.schema` checks them).

Each states what advcli itself writes, bounded by :class:`advcli.data.limits.DataLimits` where a
value decides what gets allocated (the input shape, the number of classes). Fields advcli does not
use may hold anything; a field it uses is refused unless it has the type and range it needs.
"""

from __future__ import annotations

from typing import Any

from ..data.limits import DataLimits
from ..errors import CheckpointError
from ..models.architectures import MODELS
from .layout import RUN_FORMAT
from .schema import (
    Check,
    Invalid,
    all_of,
    anything,
    boolean,
    integer,
    list_of,
    mapping,
    nullable,
    number,
    parse_document,
    scalar,
    string,
    validate,
)

RUN_FORMAT_VERSION = 1
RESUME_FORMAT = "advcli-resume"
RESUME_FORMAT_VERSION = 1
MAX_CHANNELS = 4

SHA256 = string(pattern=r"sha256:[0-9a-f]{64}", expected="'sha256:' and 64 hex digits")
FILE_NAME = string(pattern=r"(?!\.\.?$)[^/\\\x00]{1,255}", expected="a file name inside the run folder")


def format_version(newest: int) -> Check:
    def check(value: Any, where: str) -> None:
        integer(1)(value, where)
        if value > newest:
            raise Invalid(where, f"at most {newest}: the file was written by a newer advcli", value)

    return check


def input_shape(limits: DataLimits) -> Check:
    """(C, H, W): at most MAX_CHANNELS channels and the limits' pixels per image."""
    dims = list_of(integer(1), min_items=3, max_items=3, what="positive integers (C, H, W)")

    def check(value: Any, where: str) -> None:
        dims(value, where)
        channels, height, width = value
        if channels > MAX_CHANNELS or height < 2 or width < 2 or height * width > limits.max_image_pixels:
            raise Invalid(where, f"(C, H, W) with C at most {MAX_CHANNELS}, H and W at least 2 and H x W at most "
                                 f"{limits.max_image_pixels:,} pixels", value)

    return check


def class_names(limits: DataLimits) -> Check:
    return list_of(string(max_length=1000), min_items=2, max_items=limits.max_classes, what="class names (strings)")


def run_schema(limits: DataLimits) -> Check:
    """``model.json``."""
    return mapping(
        required={
            "format": string(choices=(RUN_FORMAT,)),
            "format_version": format_version(RUN_FORMAT_VERSION),
            "architecture": string(choices=MODELS.names(), expected=f"one of {MODELS.choices()}"),
            "input_shape": input_shape(limits),
            "classes": class_names(limits),
            "weights": mapping(required={"file": FILE_NAME, "sha256": SHA256}),
            "data": mapping(required={"spec": string(nonempty=True)}, optional={"fingerprint": nullable(string())}),
        },
        optional={
            "created": string(),
            "input_range": list_of(number(), min_items=2, max_items=2, what="numbers"),
            "metrics": mapping(optional={"interrupted": boolean}),
            "config": mapping(),
            "resume": mapping(required={"tensors": FILE_NAME, "tensors_sha256": SHA256, "info": FILE_NAME,
                                        "info_sha256": SHA256}, optional={"iteration": nullable(integer(0))}),
        },
    )


def _optimizer_state() -> Check:
    return mapping(required={
        "state": mapping(keys=string(pattern=r"[0-9]{1,9}", expected="a parameter index"), values=mapping(values=scalar)),
        "param_groups": list_of(mapping()),
    })


GUARD_RECORD = mapping(required={
    "best_epoch": nullable(integer(0)), "best_iteration": nullable(integer(0)),
    "best_val_accuracy": nullable(number(0)), "best_val_robust_accuracy": nullable(number(0)),
    "events": list_of(mapping()), "lr_scale": number(0), "collapsed": boolean,
})


def _step_within(value: Any, where: str) -> None:
    if value["step"] >= value["total_steps"]:
        raise Invalid("step", f"below total_steps ({value['total_steps']})", value["step"])


RESUME_SCHEMA = all_of(mapping(required={
    "format": string(choices=(RESUME_FORMAT,)),
    "format_version": format_version(RESUME_FORMAT_VERSION),
    "config": mapping(),
    "data_fingerprint": SHA256,
    "step": integer(1),
    "total_steps": integer(2),
    "seconds": number(0),
    "history": list_of(mapping(values=scalar), what="rows (objects)"),
    "optimizer": _optimizer_state(),
    "carry_requires_grad": list_of(string(), what="names"),
    "guard": nullable(GUARD_RECORD),
    "best_optimizer": nullable(_optimizer_state()),
}), _step_within)


def onnx_metadata_schema(limits: DataLimits) -> Check:
    """The ``advcli.*`` entries of an ONNX file's metadata, their JSON values already parsed."""
    return mapping(optional={
        "advcli.classes": class_names(limits),
        "advcli.input_shape": input_shape(limits),
        "advcli.input_range": list_of(number(), min_items=2, max_items=2, what="numbers"),
        "advcli.data": string(nonempty=True),
        "advcli.source_run": string(nonempty=True),
        "advcli.source_fingerprint": SHA256,
    }, values=anything)


ONNX_JSON_KEYS = ("advcli.classes", "advcli.input_shape", "advcli.input_range")


def read_onnx_metadata(metadata: dict[str, str], source: str, limits: DataLimits) -> dict[str, Any]:
    """advcli's entries of an ONNX file's metadata, JSON values parsed, checked against the schema."""
    values: dict[str, Any] = {key: value for key, value in metadata.items() if key.startswith("advcli.")}
    for key in ONNX_JSON_KEYS:
        if key in values:
            values[key] = parse_document(values[key], f"{source}: metadata {key!r}")
    return validate(values, onnx_metadata_schema(limits), f"{source}: metadata")


def check_run_meta(meta: Any, source: str, limits: DataLimits) -> dict[str, Any]:
    return validate(meta, run_schema(limits), source, error=CheckpointError)
