#!/usr/bin/python3
"""Validation queries for tuning edge-score (bench/edges.sh) without the test queries.

  edges_val.py OUTDIR   writes OUTDIR/cl.fvecs and OUTDIR/fm.fvecs (5000 each)

clustered: fresh draws from the same mixture as bench/gen_clustered.py
(seed 1234, 100000 base), taken after its 10000 test queries (checked equal),
so they are neither base nor test vectors. fashion-mnist: 5000 train images
(the base) shifted by one pixel in a random direction, a new image of the same
item (the t10k test images are not touched). Turn them into frames with
embed-load and take exact ground truth with query --exact, then sweep ef as
bench/edges.sh does; the edge-score defaults (--min-in, --min-frac) were
chosen on these, never on the test queries.
"""
import gzip
import os
import sys

import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_clustered as g
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
# clustered: fresh draws from the same mixture, after the 10000 test queries
rng=np.random.default_rng(1234); C=100; D=128
centres = rng.uniform(0.0, 60.0, size=(C, D)).astype(np.float32)
centres *= (rng.random((C, D)) > 0.3).astype(np.float32)
scale = np.exp(rng.uniform(np.log(4.0), np.log(30.0), size=(C, 1)))
aniso = rng.uniform(0.3, 1.7, size=(C, D))
scales = (scale * aniso).astype(np.float32)
weights = rng.dirichlet(np.full(C, 2.0))
base = g.draw(rng, 100000, centres, scales, weights)
q = g.draw(rng, 10000, centres, scales, weights)
ref=np.fromfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data/edges-clustered-100000-10000/queries.fvecs"),"<f4").reshape(-1,D+1)[:,1:]
assert np.array_equal(ref,q), "mismatch"
v = g.draw(rng, 5000, centres, scales, weights)
g.write_fvecs(out+"/cl.fvecs", v)
# fashion-mnist: base images shifted by one pixel (a new image of the same item)
with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
    x=np.frombuffer(f.read(),np.uint8,offset=16).reshape(-1,28,28).astype(np.float32)
r=np.random.default_rng(777); idx=r.choice(len(x),5000,replace=False)
out_=[]
for i in idx:
    dy,dx=[(0,1),(0,-1),(1,0),(-1,0)][r.integers(4)]
    out_.append(np.roll(x[i],(dy,dx),axis=(0,1)).reshape(-1))
g.write_fvecs(out+"/fm.fvecs", np.array(out_))
