"""Writes notebooks/quality.ipynb (run from the repository root): the notebook is generated so its code stays reviewable."""
import nbformat as nbf

nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
nb.cells = [
    md("# raycl bench quality\n"
       "Every method of a `raycl bench quality --out FILE` table, each seed a point and the mean a bar, against "
       "the two floors measured on the same rows: the raw pixels (dashed) and the same encoder at random init "
       "(dotted). It reads the results file only (nothing trains), so it also draws a table still being "
       "measured: the summary covers the seeds whose floors are in.\n\n"
       "Default: the Fashion-MNIST table kept in the repository (`jobs/results/fmnist-quality.json`); "
       "`RAYCL_QUALITY_RESULTS` names another file."),
    code("import json, os\n"
         "import matplotlib.pyplot as plt\n"
         "from raycl.bench.quality import METRICS, format_summary, summarise\n\n"
         "ROOT = os.environ.get('RAYCL_ROOT', '..')\n"
         "path = os.environ.get('RAYCL_QUALITY_RESULTS', os.path.join(ROOT, 'jobs/results/fmnist-quality.json'))\n"
         "state = json.load(open(path))\n"
         "methods = list(dict.fromkeys(r['method'] for r in state['runs']))\n"
         "complete = [s for s in state['seeds'] if str(s) in state['floors']]\n"
         "print(f'{len(state[\"runs\"])} runs of {len(methods)} methods; seeds with floors: {complete}')"),
    md("## The table\nMean +- sample sd over the seeds whose floors are measured; `*`: above both floors on both "
       "protocols."),
    code("summary = summarise(state, methods, complete) if complete else []\n"
         "json.dump(summary, open(os.path.join(os.environ.get('RAYCL_NOTEBOOK_STORAGE', '.'), "
         "'quality-summary.json'), 'w'))\n"
         "print(format_summary(summary) if summary else 'no seed has its floors yet: the points below are the runs so far')"),
    md("## Every run against the floors"),
    code("floors = {label: {m: [state['floors'][str(s)].get(f'{key}{m}') for s in complete] for m in METRICS}\n"
         "          for label, key in (('raw pixels', 'pixels_'), ('random init', 'random_init_'))}\n"
         "fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)\n"
         "for ax, metric in zip(axes, METRICS):\n"
         "    for i, name in enumerate(methods):\n"
         "        values = [r[metric] for r in state['runs'] if r['method'] == name]\n"
         "        ax.bar(i, sum(values) / len(values), color='tab:blue', alpha=0.35)\n"
         "        ax.plot([i] * len(values), values, 'o', color='tab:blue', ms=4)\n"
         "    for (label, values), style in zip(floors.items(), ('--', ':')):\n"
         "        known = [v for v in values[metric] if v is not None]\n"
         "        if known:\n"
         "            ax.axhline(sum(known) / len(known), ls=style, color='k', label=label)\n"
         "    ax.set_xticks(range(len(methods)), methods, rotation=45, ha='right')\n"
         "    ax.set_title(metric.replace('_top1', ' top-1'))\n"
         "    low = min([r[metric] for r in state['runs']] + [v for f in floors.values() for v in f[metric] if v])\n"
         "    ax.set_ylim(low - 0.03, 1.0)\n"
         "axes[0].set_ylabel('top-1 on the held-out rows'); axes[1].legend(loc='lower right')\n"
         "plt.tight_layout(); plt.show()"),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/quality.ipynb")
