"""Speed paths for particular hardware, behind one seam.

Nothing here changes what a detector computes; each part makes the same computation faster where
the hardware rewards it:

- cuda_graphs, graph_cache: the training step's static-shape parts replayed as CUDA graphs
  (`train.cuda_graphs`): the detector's `dense_step`, each R-CNN stage's sampling and 2MLP box head
  with its losses, and the padding that keeps those captures few.
- concurrent_nms: many independent NMS calls at once (threads on the CPU, streams on a GPU), the
  RPN's per-(image, level) calls.
- roi_align: torchvision's CPU RoIAlign spread over the intra-op threads.
- roi_bucket: convolutional RoI heads run on RoI counts padded to a few sizes, for cuDNN's
  algorithm search.
- sync_free: tensor helpers that never make the host wait for the GPU.
- thread_pool: the single-threaded worker threads the CPU paths use.

The model's parts never import this package. Detector configs hand the RPN `concurrent_nms` and
the R-CNN heads `roi_bucket.run_bucketed` as the kernels to call; the RoIAlign layer and the input
preprocessor call `roi_align` and `sync_free` directly; `enable_cuda_graphs` replaces the
detector's methods named in the detector contract (simpledet/modeling/detectors/detector.py) on
one model instance.
"""
