"""Writes notebooks/sweep.ipynb (run from the repository root): the notebook is generated so its code stays reviewable."""
import nbformat as nbf

nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
nb.cells = [
    md("# raycl sweep\n"
       "A learning-rate sweep of the SimCLR demo with Ray Tune and ASHA early stopping on kNN top-1: launch it, "
       "plot every trial's curve, see which ASHA stopped early, and train the best config.\n\n"
       "`RAYCL_NOTEBOOK_TINY=1` runs it at test size (the test suite executes this notebook)."),
    code("import json, os, time, yaml\n"
         "import matplotlib.pyplot as plt\n"
         "import ray\n"
         "from raycl import api\n"
         "from raycl.config import load_config, read_yaml\n"
         "from raycl.tune import format_table\n\n"
         "TINY = os.environ.get('RAYCL_NOTEBOOK_TINY') == '1'\n"
         "STORAGE = os.environ.get('RAYCL_NOTEBOOK_STORAGE', os.path.expanduser('~/raycl_runs'))\n"
         "recipe = read_yaml('recipe:sweeps/simclr_mnist_lr')  # a recipe that ships with raycl\n"
         "recipe['run'].update(storage_path=STORAGE, name=f'sweep-nb-{int(time.time())}')\n"
         "if TINY:\n"
         "    recipe['data'].update(num_samples=256, batch_size=64)\n"
         "    recipe['model'].update(width=8, proj_hidden_dim=32, proj_out_dim=16)\n"
         "    recipe['distributed'].update(workers=1)\n"
         "    recipe['optim']['warmup_epochs'] = 0\n"
         "    recipe['eval'].update(knn_k=20)\n"
         "    recipe['run'].update(epochs=4, log_every=100)\n"
         "    recipe['sweep']['max_concurrent'] = 2   # 1-worker trials: two at once on 2 cores\n"
         "path = os.path.join(STORAGE, recipe['run']['name'] + '.yaml')\n"
         "os.makedirs(STORAGE, exist_ok=True)\n"
         "yaml.safe_dump(recipe, open(path, 'w'))\n"
         "recipe['sweep']"),
    code("started_here = api.connect()\n"
         "result = api.sweep(path)\n"
         "json.dump(result, open(path + '.result.json', 'w'))   # for the record (and the test suite)\n"
         "print(format_table(result))"),
    md("## ASHA's curves\nEvery trial's kNN top-1 per epoch; a trial ASHA stopped early ends before the last epoch "
       "(dashed)."),
    code("fig, ax = plt.subplots(figsize=(7, 4))\n"
         "for t in result['trials']:\n"
         "    ep = [e for e, _ in t['curve']]; val = [v for _, v in t['curve']]\n"
         "    ax.plot(ep, val, '--' if t['stopped_early'] else '-', marker='o',\n"
         "            label=f\"lr {t['config']['optim.base_lr']}\" + (' (stopped early)' if t['stopped_early'] else ''))\n"
         "ax.set(xlabel='epoch', ylabel='kNN top-1', title='ASHA on kNN top-1'); ax.legend(fontsize=8)\n"
         "plt.show()\n"
         "[(t['config'], t['epochs'], t['stopped_early']) for t in result['trials']]"),
    md("## Train the best config\n`best_config.yaml` is a plain raycl config: `raycl train` accepts it as is."),
    code("best = load_config(result['best_config'], ['run.epochs=1', 'run.checkpoint_every=1'] if TINY else [])\n"
         "metrics = api.train(best)\n"
         "json.dump(metrics, open(path + '.best.json', 'w'))\n"
         "{k: metrics[k] for k in ('epoch', 'loss', 'knn_top1')}"),
    code("if started_here:\n    ray.shutdown()"),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/sweep.ipynb")
