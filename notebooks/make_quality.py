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
       "Default: the Fashion-MNIST table kept in the repository, tuned (`jobs/results/fmnist-quality-tuned.json`) "
       "once it has runs, else the untuned one (`jobs/results/fmnist-quality.json`); `RAYCL_QUALITY_RESULTS` "
       "names another file."),
    code("import json, os\n"
         "import matplotlib.pyplot as plt\n"
         "from raycl.quality.summary import METRICS, format_orderings, format_summary, orderings, summarise\n\n"
         "ROOT = os.environ.get('RAYCL_ROOT', '..')\n"
         "tables = [os.path.join(ROOT, 'jobs/results', f) for f in ('fmnist-quality-tuned.json', 'fmnist-quality.json')]\n"
         "path = os.environ.get('RAYCL_QUALITY_RESULTS') or next(\n"
         "    p for p in tables if p == tables[-1] or json.load(open(p))['runs'])\n"
         "state = json.load(open(path))\n"
         "methods = list(dict.fromkeys(r['method'] for r in state['runs']))\n"
         "complete = [s for s in state['seeds'] if str(s) in state['floors']]\n"
         "print(f'{path}: {len(state[\"runs\"])} runs of {len(methods)} methods; seeds with floors: {complete}')"),
    md("## The table\nMean +- sample sd over the seeds whose floors are measured; `*`: above both floors on both "
       "protocols; rank: the effective rank of the held-out features. Then the papers' orderings the rows can "
       "test: *shown* when every difference of means is above twice its standard error."),
    code("summary = summarise(state, methods, complete) if complete else []\n"
         "json.dump(summary, open(os.path.join(os.environ.get('RAYCL_NOTEBOOK_STORAGE', '.'), "
         "'quality-summary.json'), 'w'))\n"
         "print(format_summary(summary) if summary else 'no seed has its floors yet: the points below are the runs so far')\n"
         "print(format_orderings(orderings(summary)))"),
    md("## Every run against the floors\nkNN and linear top-1, and the effective rank of the held-out features "
       "(how many directions they spread over, of the encoder's width; a collapse reads near 1). The pixels' rank "
       "is of 784 dimensions, off this scale: it is in the legend."),
    code("floors = {label: {m: [state['floors'][str(s)].get(f'{key}{m}') for s in complete] for m in METRICS}\n"
         "          for label, key in (('raw pixels', 'pixels_'), ('random init', 'random_init_'))}\n"
         "fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))\n"
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
         "ranked = [n for n in methods if any(r.get('effective_rank') for r in state['runs'] if r['method'] == n)]\n"
         "ax = axes[2]\n"
         "for i, name in enumerate(ranked):\n"
         "    values = [r['effective_rank'] for r in state['runs'] if r['method'] == name and r.get('effective_rank')]\n"
         "    ax.bar(i, sum(values) / len(values), color='tab:green', alpha=0.35)\n"
         "    ax.plot([i] * len(values), values, 'o', color='tab:green', ms=4)\n"
         "ranks = {k: [state['floors'][str(s)].get(k) for s in complete] for k in ('random_init_effective_rank', 'pixels_effective_rank')}\n"
         "ranks = {k: sum(v) / len(v) for k, v in ranks.items() if v and None not in v}\n"
         "if 'random_init_effective_rank' in ranks:\n"
         "    ax.axhline(ranks['random_init_effective_rank'], ls=':', color='k', label='random init')\n"
         "if 'pixels_effective_rank' in ranks:\n"
         "    ax.plot([], [], ' ', label=f\"raw pixels: {ranks['pixels_effective_rank']:.0f}\")\n"
         "ax.set_xticks(range(len(ranked)), ranked, rotation=45, ha='right'); ax.set_title('effective rank')\n"
         "ax.set_ylim(0, None); ax.legend(loc='lower right')\n"
         "plt.tight_layout(); plt.show()"),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/quality.ipynb")
