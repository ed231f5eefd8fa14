"""Context parallelism: one edit's transformer split across a group of devices.

  options.py  what one rank of a group is (degree, mode, rank, rendezvous), torch-free
  check.py    the startup refusals (group size, head count, tiers, memory modes), torch-free
  group.py    joining the group (torch.distributed), diffusers' parallelism on the
              transformer, the sequence-length switch and the cancel every rank agrees on

Each rank runs the whole pipeline on the same inputs and seed (text encoders and VAE on
every rank; they are a small part of a step); only the transformer's sequence is split,
by diffusers' own `enable_parallelism` plan for Flux (image and text streams both split,
the output gathered). Rank 0's result is the job's.
"""
