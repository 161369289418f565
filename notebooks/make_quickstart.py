"""Writes notebooks/quickstart.ipynb (run from the repository root): the notebook is generated so its code stays reviewable."""
import nbformat as nbf

nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
nb.cells = [
    md("# raycl quickstart\n"
       "Connect to a Ray cluster (or start Ray here), pre-train InterCLR on the built-in digits with 2 Ray Train "
       "workers, watch loss and kNN top-1 while it trains, ask the BankServer about the clusters, then "
       "evaluate against a random-init encoder and look at nearest neighbours.\n\n"
       "Needs `pip install -e '.[notebook]'`. Set `RAY_ADDRESS` to join a running cluster "
       "(e.g. through `kubectl port-forward` / `ray dashboard`, see README). "
       "`RAYCL_NOTEBOOK_TINY=1` runs everything at test size (the test suite executes this notebook).\n\n"
       "The recipe is InterCLR's own (Xie et al. 2022, 200-epoch ImageNet recipe) scaled to 4,000 digits: SGD lr "
       "0.03 at batch 256, weight decay 1e-4, temperature 0.1, bank momentum 0.5, lambda 0.75, inter margin -0.5, "
       "semi-hard inter negatives; 100 clusters (10x the classes, as the paper's 10,000 for ImageNet) and 1,024 "
       "negatives. As in the paper (section 3.2), the memory bank starts as the initial network's features of "
       "every digit and k-means clusters them before the first step (`method.bank_init: features`)."),
    code("import os, threading, time\n"
         "import matplotlib.pyplot as plt\n"
         "from IPython.display import clear_output, display\n"
         "import ray\n"
         "from raycl import api\n"
         "from raycl.config import load_config\n\n"
         "TINY = os.environ.get('RAYCL_NOTEBOOK_TINY') == '1'\n"
         "STORAGE = os.environ.get('RAYCL_NOTEBOOK_STORAGE', os.path.expanduser('~/raycl_runs'))\n"
         "size = (['data.num_samples=512', 'data.batch_size=64', 'model.width=8', 'model.proj_hidden_dim=32',\n"
         "         'model.proj_out_dim=16', 'eval.knn_k=20', 'optim.warmup_epochs=0', 'run.epochs=3',\n"
         "         'method.bank_size=512', 'method.num_clusters=10', 'method.num_negatives=64', 'run.log_every=100']\n"
         "        if TINY else ['run.epochs=6', 'method.bank_size=4000', 'method.num_clusters=100', 'method.num_negatives=1024'])\n"
         "recipe = ['method.name=interclr', 'method.bank_init=features', 'method.temperature=0.1', 'optim.base_lr=0.03',\n"
         "          'optim.weight_decay=1e-4', 'method.bank_sync_every=2']\n"
         "cfg = load_config(api.demo_config_path(), [*recipe,\n"
         "                                           f'run.storage_path={STORAGE}', f'run.name=quickstart-{int(time.time())}', *size])\n"
         "started_here = api.connect()     # joins $RAY_ADDRESS if set, else starts Ray on this machine\n"
         "floor = api.random_init_knn(cfg)  # kNN top-1 of the same encoder at random init: the bar to beat\n"
         "ray.cluster_resources(), floor"),
    md("## Launch the run in the background and plot it live\n"
       "`api.train` blocks until the run ends, so it runs in a thread; the cell below redraws loss and kNN "
       "top-1 from the run's newest checkpoint every few seconds, and the cluster sizes from the BankServer."),
    code("result = {}\n"
         "thread = threading.Thread(target=lambda: result.update(api.train(cfg)), daemon=True)\n"
         "thread.start()"),
    code("def draw(hist, sizes):\n"
         "    fig, ax = plt.subplots(1, 3, figsize=(14, 3.5))\n"
         "    ep = [h['epoch'] for h in hist]\n"
         "    ax[0].plot(ep, [h['loss'] for h in hist], 'o-'); ax[0].set(title='loss', xlabel='epoch')\n"
         "    kn = [(h['epoch'], h['knn_top1']) for h in hist if 'knn_top1' in h]\n"
         "    ax[1].plot([e for e, _ in kn], [v for _, v in kn], 'o-'); ax[1].set(title='kNN top-1', xlabel='epoch')\n"
         "    ax[1].axhline(floor, color='gray', ls='--', label='random init'); ax[1].legend()\n"
         "    ax[2].bar(range(len(sizes)), sizes); ax[2].set(title='cluster sizes (BankServer)', xlabel='cluster')\n"
         "    fig.tight_layout()\n"
         "    return fig\n\n"
         "server = None\n"
         "while thread.is_alive():\n"
         "    time.sleep(3)\n"
         "    ckpt = api.latest_checkpoint(cfg)\n"
         "    if ckpt is None:\n"
         "        continue\n"
         "    try:\n"
         "        server = server or api.bank_server(cfg.run.name)\n"
         "        sizes = ray.get(server.cluster_sizes.remote())\n"
         "    except ValueError:   # the server starts with the run\n"
         "        sizes = []\n"
         "    clear_output(wait=True)\n"
         "    fig = draw(api.history(ckpt), sizes); display(fig); plt.close(fig)\n"
         "thread.join()\n"
         "clear_output(wait=True)\n"
         "server = api.bank_server(cfg.run.name)\n"
         "draw(api.history(result['checkpoint']), ray.get(server.cluster_sizes.remote()));\n"
         "result"),
    md("## What the BankServer knows\nLabel churn per step (how many of a batch's samples changed cluster; "
       "pushed every 2 steps) and per epoch (mean over the epoch's steps), and the nearest bank rows of one sample, "
       "served while (and after) training runs."),
    code("churn = ray.get(server.label_churn.remote())\n"
         "hist = api.history(result['checkpoint'])\n"
         "fig, ax = plt.subplots(1, 2, figsize=(11, 3))\n"
         "ax[0].plot([s for s, _ in churn], [c for _, c in churn], '.-'); ax[0].set(title='k-means label churn per step', xlabel='step')\n"
         "ax[1].plot([h['epoch'] for h in hist], [h['method/churn'] for h in hist], 'o-')\n"
         "ax[1].set(title='churn per epoch', xlabel='epoch', ylim=(0, 1))\n"
         "plt.show()\n"
         "ray.get(server.stats.remote()), ray.get(server.neighbours.remote(0, 5))"),
    md("## Evaluation against a random-init encoder"),
    code("ev = api.evaluate(result['checkpoint'])\n"
         "ev['random_init_knn_top1'] = floor\n"
         "fig, ax = plt.subplots(figsize=(5, 3))\n"
         "ax.bar(['kNN', 'linear', 'kNN random init'], [ev['knn_top1'], ev['linear_top1'], ev['random_init_knn_top1']])\n"
         "ax.set_ylim(0, 1); ax.set_title('top-1 on the held-out digits'); plt.show()\n"
         "ev"),
    md("## Nearest neighbours\nHeld-out digits (left) and their 5 nearest training images under the trained encoder."),
    code("nn = api.neighbours(result['checkpoint'], queries=5, k=5)\n"
         "fig, ax = plt.subplots(5, 6, figsize=(7, 6))\n"
         "for q in range(5):\n"
         "    row = [nn['query_images'][q]] + list(nn['neighbour_images'][q])\n"
         "    labels = [nn['query_labels'][q]] + list(nn['neighbour_labels'][q])\n"
         "    for j, (img, lab) in enumerate(zip(row, labels)):\n"
         "        ax[q, j].imshow(img.squeeze(), cmap='gray'); ax[q, j].set_title(str(lab), fontsize=8); ax[q, j].axis('off')\n"
         "fig.tight_layout(); plt.show()"),
    code("if started_here:\n    ray.shutdown()"),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/quickstart.ipynb")
