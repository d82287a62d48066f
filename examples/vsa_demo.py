"""VSA from Python (docs/vsa.md example): records, analogy, cleanup memory."""
import numpy as np

import tritter_accel as ta

ops = ta.VsaOps(dim=10_000, algebra="map")  # bipolar random vectors, MAP bind, ties -> 0
names = ["country", "capital", "currency", "usa", "wdc", "dollar", "mex", "mxc", "peso"]
hv = {n: ops.random(seed=i) for i, n in enumerate(names)}  # packed uint64 [2 * ceil(dim / 64)]


def record(**fields):
    return ops.bundle([ops.bind(hv[role], hv[filler]) for role, filler in fields.items()])


usa = record(country="usa", capital="wdc", currency="dollar")
mex = record(country="mex", capital="mxc", currency="peso")

memory = ta.ItemMemory(ops.dim)  # cleanup memory: label = index into names
for i, n in enumerate(names):
    memory.add(hv[n], label=i)

# "What is the dollar of Mexico?"  dollar * (USA * MEX) ≈ peso
labels, scores = memory.query(ops.bind(hv["dollar"], ops.bind(usa, mex)), k=3)
print(f"the dollar of Mexico is {names[labels[0]]} (cosine {scores[0]:.3f}; runner-up {scores[1]:.3f})")

# Role-filler retrieval: unbind the role from the record.
labels, _ = memory.query(ops.unbind(mex, hv["capital"]), k=1)
print("capital of MEX:", names[labels[0]])

# Quasi-orthogonality and a 10,000-vector top-10 query.
big = ta.ItemMemory(ops.dim)
big.add_many(np.stack([ops.random(1000 + i) for i in range(10_000)]))
noisy = ops.unpack(ops.random(1000 + 4242)).copy()
noisy[::3] = 0  # drop a third of the trits
labels, scores = big.query(noisy, k=10)
print("top-1 of a damaged copy of item 4242:", labels[0], f"(cosine {scores[0]:.3f}, next {scores[1]:.3f})")
print(f"cos(random, random) = {ops.similarity(ops.random(1), ops.random(2)):+.4f} (sd 1/sqrt(dim) = 0.01)")
