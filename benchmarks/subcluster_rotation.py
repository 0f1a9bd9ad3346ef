"""Probe for issue 14: a sub-cluster classifier trained on (sub-cluster, rotation) labels.

Does the auxiliary rotation task (Hendrycks et al. 2019; GEOM's task with the
labels given) give the sub-cluster classifier features on which k-NN beats
IsolationForest on Fashion-MNIST with several normal classes? Not a detector
yet: a bare torch loop on the benchmark's own tasks, to decide whether to
build it as a ``SubClusterDetector`` option.

Budget: the tasks of ``skgeoad-benchmark --dataset fashion-mnist --protocol
multi-normal --max-train 300 --n-test 2000 [--anomaly-classes ...]`` (300
training images per normal class, a stratified 2,000 of the test set), the
small CNN (``skgeoad.networks.SmallCNN``; ``--net wrn`` for WRN-10-1), SGD 0.01
with momentum 0.9, weight decay 5e-4 and a cosine schedule, batch 128, 30
epochs, one thread. "base": the plain k-way classifier (MSP, cosine 3-NN on
its features); "rot": 4k-way (class, rotation) labels, every batch in its four
rotations; scores: ``rot_geom`` = max over classes of the summed log
probability of (class, r) for each rotation r, ``rot_simpl`` the same in
probability space, ``rot_knn`` cosine 3-NN on the unrotated image's features,
``rot_knn4`` on the four rotations' features concatenated. IsolationForest
(defaults) on the same pixels. Prints one JSON line of AUROCs and seconds per
task and seed. About 1-3 minutes per task and seed on a 2-core CPU.

    python benchmarks/subcluster_rotation.py [--anomaly-classes 5,6,7,8,9] [--ks 2,3,4,5]
                                             [--seeds 1] [--first-seed 0] [--net cnn|wrn]
"""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from skgeoad.benchmark.protocols import load_rows, make_tasks, stratified_subset
from skgeoad.networks.cnn import SmallCNN
from skgeoad.networks.wrn import WideResNet

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--anomaly-classes", default="5,6,7,8,9")
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--seeds", type=int, default=1)
parser.add_argument("--first-seed", type=int, default=0)
parser.add_argument("--ks", default="1,2,3,4,5")
parser.add_argument("--net", default="cnn")
parser.add_argument("--variants", default="base,rot")
parser.add_argument("--out", default=None)
args = parser.parse_args()
torch.set_num_threads(1)  # the figures in the notes were measured on one thread

X_train, y_train, X_test, y_test = load_rows("fashion-mnist")
test = stratified_subset(y_test, 2000)
X_test, y_test = X_test[test], y_test[test]
anomalies = [int(c) for c in args.anomaly_classes.split(",")]
tasks = make_tasks("fashion-mnist", "multi-normal", X_train, y_train, X_test, y_test,
                   max_train=300, anomaly_classes=anomalies)
ks = [int(k) for k in args.ks.split(",")]


def as_images(X):
    """The benchmark's rows (Fashion-MNIST padded to 32x32, scaled to [-1, 1]) as image tensors."""
    return torch.as_tensor(np.asarray(X, dtype=np.float32)).reshape(-1, 1, 32, 32)


def rotations(x):
    return [torch.rot90(x, r, dims=(2, 3)) for r in range(4)]


def make_net(n_out):
    if args.net == "cnn":
        return SmallCNN(1, n_out)
    return WideResNet(1, n_out, depth=10, widen_factor=1)


def train(x, labels, n_out, rot, seed):
    torch.manual_seed(seed)
    net = make_net(n_out)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    n = len(x)
    steps = args.epochs * ((n + 127) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(args.epochs):
        for idx in torch.randperm(n, generator=g).split(128):
            xb, yb = x[idx], labels[idx]
            if rot:
                xb = torch.cat(rotations(xb))
                yb = torch.cat([yb * 4 + r for r in range(4)])
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def feats_logits(net, x):
    f, l = [], []
    for xb in x.split(512):
        h = net.forward_features(xb)
        f.append(h)
        l.append(net.forward_head(h))
    return torch.cat(f), torch.cat(l)


def knn(f, ref, k=3):
    f, ref = F.normalize(f, dim=1), F.normalize(ref, dim=1)
    return (f @ ref.T).topk(k, dim=1).values.mean(1)


results = []
for task in tasks:
    if task.key not in ks:
        continue
    y = task.fit_params["cluster_labels"]
    classes, y = np.unique(y, return_inverse=True)
    K = len(classes)
    xtr, xte = as_images(task.X_train), as_images(task.X_test)
    ytr = torch.as_tensor(y)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        row = {"k": task.key, "seed": seed}
        iso = IsolationForest(random_state=seed).fit(task.X_train)
        row["iforest"] = roc_auc_score(task.is_normal, iso.score_samples(task.X_test))
        if "base" in args.variants and K > 1:
            t0 = time.time()
            net = train(xtr, ytr, K, False, seed)
            ftr, _ = feats_logits(net, xtr)
            fte, lte = feats_logits(net, xte)
            row["base_msp"] = roc_auc_score(task.is_normal, lte.softmax(1).amax(1))
            row["base_knn"] = roc_auc_score(task.is_normal, knn(fte, ftr))
            row["base_s"] = time.time() - t0
        if "rot" in args.variants:
            t0 = time.time()
            net = train(xtr, ytr, 4 * K, True, seed)
            ftr, _ = feats_logits(net, xtr)
            per_rot = [feats_logits(net, xr) for xr in rotations(xte)]
            logp = torch.stack([l.log_softmax(1).view(-1, K, 4)[:, :, r] for r, (_, l) in enumerate(per_rot)])
            # (4, n, K): log p(class c, rotation r | rot_r(x)); sum over r, max over c
            row["rot_geom"] = roc_auc_score(task.is_normal, logp.sum(0).amax(1))
            # probability-space variant (GEOM's simplified score): mean over r of p(c, r)
            row["rot_simpl"] = roc_auc_score(task.is_normal, logp.exp().mean(0).amax(1))
            row["rot_knn"] = roc_auc_score(task.is_normal, knn(per_rot[0][0], ftr))
            ftr_all = torch.cat([feats_logits(net, xr)[0] for xr in rotations(xtr)], 1)
            fte_all = torch.cat([f for f, _ in per_rot], 1)
            row["rot_knn4"] = roc_auc_score(task.is_normal, knn(fte_all, ftr_all))
            row["rot_s"] = time.time() - t0
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
        results.append(row)

keys = [k for k in results[0] if k not in ("k", "seed")]
print("mean", {k: round(float(np.mean([r[k] for r in results if k in r])), 4) for k in keys})
if args.out:
    json.dump(results, open(args.out, "w"))
