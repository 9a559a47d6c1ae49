"""[transform]: batch transform with the serving image and the model the endpoint serves; without the
table `python -m deploy transform` says to add one."""

from dataclasses import dataclass

from deploy.stack.validate import INSTANCE_TYPE, StackError, Table

# Batch transform input formats: content type -> (SplitType, BatchStrategy). Images are one record per
# object; JSON Lines ({"b64": ...} per line) are split by line and sent several lines per request.
TRANSFORM_CONTENT_TYPES = {
    "application/x-image": ("None", "SingleRecord"),
    "application/jsonlines": ("Line", "MultiRecord"),
}


@dataclass(frozen=True)
class Transform:
    instance_type: str
    instance_count: int
    content_type: str
    max_payload_mb: int
    max_concurrent_transforms: int

    @property
    def split_type(self) -> str:
        return TRANSFORM_CONTENT_TYPES[self.content_type][0]

    @property
    def batch_strategy(self) -> str:
        return TRANSFORM_CONTENT_TYPES[self.content_type][1]


def parse_transform(table: Table) -> Transform | None:
    if not table.present:
        return None
    content_type = table.string("content_type")
    if content_type not in TRANSFORM_CONTENT_TYPES:
        raise StackError(
            f"transform.content_type: {content_type!r} is not one of {', '.join(TRANSFORM_CONTENT_TYPES)}"
        )
    transform = Transform(
        instance_type=table.string("instance_type", pattern=INSTANCE_TYPE),
        instance_count=table.integer("instance_count", minimum=1),
        content_type=content_type,
        max_payload_mb=table.integer("max_payload_mb", minimum=1, maximum=100),
        max_concurrent_transforms=table.integer("max_concurrent_transforms", minimum=1, maximum=100),
    )
    if transform.max_payload_mb * transform.max_concurrent_transforms > 100:
        raise StackError(
            "transform.max_concurrent_transforms: times transform.max_payload_mb may not exceed 100 (MB)"
        )
    table.reject_unknown()
    return transform
