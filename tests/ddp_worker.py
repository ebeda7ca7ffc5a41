"""Run under `torchrun --nproc_per_node=2`: train a tiny model with DDP (gloo on CPU), then check
that every rank holds exactly the same parameters. Rank 0 writes the verdict to argv[1]."""

import json
import sys

import torch
import torch.distributed as dist

from vdm_core.train import parse_args, train

out_dir, verdict_path = sys.argv[1], sys.argv[2]
cfg, model_cfg = parse_args([
    "--out-dir", out_dir, "--steps", "3", "--batch-size", "2", "--base-channels", "16",
    "--channel-mults", "1,2", "--attn-resolutions", "4", "--head-dim", "8", "--image-size", "8",
    "--num-frames", "4", "--image-frames", "1", "--sample-every", "0", "--threads", "1",
])
model = train(cfg, model_cfg)
flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0:
    initial = torch.cat([p.reshape(-1) for p in type(model)(model_cfg).parameters()])
    verdict = {"world_size": dist.get_world_size(),
               "identical": all(torch.equal(g, gathered[0]) for g in gathered),
               "moved": float((flat - initial).abs().max())}
    with open(verdict_path, "w") as f:
        json.dump(verdict, f)
dist.barrier()  # both ranks leave together: a rank that tears down gloo alone can abort
dist.destroy_process_group()
