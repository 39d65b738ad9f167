"""Pure tensor ops, apart from the nn.Modules: segment IoU and Soft-NMS."""

from cltdr.ops.nms import soft_nms
from cltdr.ops.segments import aligned_segment_iou, segment_iou

__all__ = ["aligned_segment_iou", "segment_iou", "soft_nms"]
