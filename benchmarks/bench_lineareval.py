"""Speed and memory of the linear-evaluation loop, measured side by side in one run on the same clips.

Prints:
1. extraction wall time (the real pipeline: decoding in DataLoader workers, normalisation statistics, model) against
   the model's pure forward time on the same clips already decoded in memory (target: at most 1.15x);
2. each head's fit time and test accuracy (EVAR-protocol probe, seeds 42-44; logistic regression);
3. peak memory (this process, and its worker children);
4. with --evar_dir/--evar_python: EVAR's own 2pass_lineareval.py end to end against ours (`2pass_lineareval.py
   --repeat 3` in a fresh process, cache cleared), as a speed ratio.

    python benchmarks/bench_lineareval.py --task spcv2_12 --dataset ../shared/data/speech_commands_v2_test_a \\
        --config config/byola_d512.yaml --options weight_file=../shared/weights/AudioNTT2020-BYOLA-64x96d512.pth
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mb(who) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def pure_forward_seconds(model, dataset, batch_size: int) -> float:
    """The model alone: every clip decoded into memory first, then timed forward passes in the same batches."""
    import torch

    from evar.data import collate_clips

    clips = [dataset[i] for i in range(len(dataset))]
    pad_to = dataset.unit_samples if dataset.crop_policy != 'full' else 0  # the batches the pipeline makes
    batches = [collate_clips(clips[i:i + batch_size], pad_to) for i in range(0, len(clips), batch_size)]
    model.eval()
    with torch.inference_mode():
        model.embed(*batches[0][:2])  # warm-up, as the pipeline's first batch also pays it
        t0 = time.perf_counter()
        for wav, lengths, _ in batches:
            model.embed(wav, lengths)
    return time.perf_counter() - t0


def measure_ours(args, work: Path) -> dict:
    import numpy as np
    import torch

    from evar.config import load_config
    from evar.data import ClipDataset, read_metadata
    from evar.embed.source import TaskEmbeddings
    from evar.heads import head_class
    from evar.modes.linear import HeadOptions, fit_and_test
    from evar.splits import make_plan
    from evar.tasks import get_task

    cfg = load_config(args.config, args.options)
    task = get_task(args.task, unit_sec=args.unit_sec)
    meta = read_metadata(task.metadata_path(work))
    source = TaskEmbeddings(cfg, task, meta, work, 'cpu', progress=False)
    train_rows = meta.split_indices(1)['train']
    root, _ = source.data_root()
    dataset = ClipDataset(root, meta.file_names, source.sample_rate, task.unit_sec, cfg.run.crop)
    extracts, forwards = [], []
    for _ in range(args.rounds):  # interleaved rounds: this VM's speed drifts, so compare medians
        t0 = time.perf_counter()
        embs = source.compute(train_rows if source.stats_scope(1) else np.arange(0))
        extracts.append(time.perf_counter() - t0)
        # Statistics are now set: the pure pass measures the front end and network only.
        forwards.append(pure_forward_seconds(source.model(), dataset, source.extract_batch_size))
    extract, forward = float(np.median(extracts)), float(np.median(forwards))
    # The fastest round of each is the least disturbed by the VM's speed drift (as timeit reports the minimum).
    fastest = min(extracts) / min(forwards)

    heads = []
    log_dir = Path(tempfile.mkdtemp())
    for kind, seeds in (('probe', (42, 43, 44)), ('logreg', (42,)), ('knn', (42,))):
        for seed in seeds:
            plan = make_plan(meta, task, 1, seed, 0.1)
            t0 = time.perf_counter()
            head = head_class(kind).from_options(HeadOptions(head=kind), cfg.run, seed, 'cpu')
            result = fit_and_test(head, plan, embs, meta, task.metric, log_dir)
            heads.append((kind, seed, time.perf_counter() - t0, result.score))
    return {'clips': len(meta), 'extract': extract, 'forward': forward, 'fastest_ratio': fastest, 'heads': heads,
            'threads': torch.get_num_threads()}


def time_our_cli(args, work: Path) -> tuple:
    """Our whole 2pass run, as a user starts it, in a fresh process with an empty cache: (seconds, peak MB)."""
    import shutil

    shutil.rmtree(work / 'cache', ignore_errors=True)
    out = Path(tempfile.mkdtemp())
    cmd = [sys.executable, str(ROOT / '2pass_lineareval.py'), str(args.config), args.task, '--options', args.options,
           '--repeat', '3', '--work_root', str(work), '--results_dir', str(out / 'results'),
           '--logs_dir', str(out / 'logs'), '--progress', 'False']
    if args.unit_sec:
        cmd += ['--unit_sec', str(args.unit_sec)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=out)
    seconds = time.perf_counter() - t0
    peak = float(proc.stderr.rsplit('peak memory ', 1)[1].split()[0])
    return seconds, peak


def wav_copy(src: Path, dst: Path) -> None:
    import soundfile as sf

    for f in src.rglob('*'):
        if f.suffix.lower() in ('.flac', '.wav', '.ogg'):
            out = (dst / f.relative_to(src)).with_suffix('.wav')
            out.parent.mkdir(parents=True, exist_ok=True)
            data, rate = sf.read(f, dtype='int16')
            sf.write(out, data, rate, subtype='PCM_16')


def main():
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', default='spcv2_12')
    parser.add_argument('--dataset', default=str(ROOT.parent / 'shared/data/speech_commands_v2_test_a'))
    parser.add_argument('--config', default=str(ROOT / 'config/byola_d512.yaml'))
    parser.add_argument('--options', default=f'weight_file={ROOT.parent}/shared/weights/AudioNTT2020-BYOLA-64x96d512.pth')
    parser.add_argument('--unit_sec', type=float, default=None)
    parser.add_argument('--rounds', type=int, default=7, help='measurement rounds; medians are reported')
    parser.add_argument('--as_wav', action='store_true',
                        help='use a 16-bit WAV copy of the audio (as EVAR\'s prepare_wav step makes) instead of FLAC')
    parser.add_argument('--evar_dir', default=None, help='an EVAR checkout prepared per its README')
    parser.add_argument('--evar_python', default=None)
    parser.add_argument('--evar_task', default=None, help="EVAR's name for the same metadata (e.g. spcv2)")
    parser.add_argument('--evar_options', default=None)
    parser.add_argument('--sync_metadata', action='store_true',
                        help="copy our task CSV over EVAR's evar/metadata/<evar_task>.csv so both use the same rows")
    args = parser.parse_args()

    from evar.metadata import main as build_metadata
    from evar.tasks import get_task

    work = Path(tempfile.mkdtemp()) / 'work'
    build_metadata([args.task, args.dataset, '--work_root', str(work), '--no_link'])
    audio = work / '16k' / get_task(args.task).folder
    audio.parent.mkdir(parents=True, exist_ok=True)
    if args.as_wav:
        wav_copy(Path(args.dataset), audio)  # the metadata still names .flac files: the loader resolves .wav
    else:
        audio.symlink_to(Path(args.dataset).resolve())
    ours = measure_ours(args, work)
    print(f'\n== {args.task}: {ours["clips"]} clips, {Path(args.config).name}, CPU threads {ours["threads"]}')
    print(f'extraction (full pipeline) {ours["extract"]:.2f}s  |  pure model forward {ours["forward"]:.2f}s  |  '
          f'ratio {ours["extract"] / ours["forward"]:.3f} (target <= 1.15; medians of {args.rounds} rounds; '
          f'fastest rounds {ours["fastest_ratio"]:.3f})')
    for kind, seed, sec, acc in ours['heads']:
        print(f'head {kind:6s} seed {seed}: fit+test {sec:.2f}s, test accuracy {acc:.4f}')
    print(f'peak RSS of this benchmark process (all clips held in memory for the pure pass): '
          f'{peak_rss_mb(resource.RUSAGE_SELF):.0f} MB')
    if args.evar_dir:
        import shutil

        from benchmarks.evar_reference import run_evar

        ours_csv = work / 'metadata' / f'{args.task}.csv'
        evar_csv = Path(args.evar_dir) / 'evar' / 'metadata' / f'{args.evar_task or args.task}.csv'
        if args.sync_metadata:
            shutil.copy(ours_csv, evar_csv)
        if not evar_csv.is_file() or evar_csv.read_bytes() != ours_csv.read_bytes():
            sys.exit(f'{evar_csv} differs from our {ours_csv}: pass --sync_metadata to compare on the same rows.')

        ours_runs, peaks = zip(*[time_our_cli(args, work) for _ in range(args.rounds)])
        ours_peak = max(peaks)
        evar = run_evar(args.evar_dir, args.evar_python, args.evar_task or args.task, 'config/byola.yaml',
                        args.evar_options or args.options, 3)
        ours_total = float(np.median(ours_runs))
        print(f'end to end, embed once + 3 seeds: EVAR {evar["wall_s"]:.1f}s vs evar {ours_total:.1f}s '
              f'(runs {", ".join(f"{t:.1f}" for t in ours_runs)}) -> {evar["wall_s"] / ours_total:.1f}x faster')
        print(f'peak RSS, largest process: EVAR {evar["peak_rss_single_process_mib"]:.0f} MiB '
              f'(all its processes {evar["peak_rss_tree_sum_mib"]} MiB) vs evar {ours_peak:.0f} MB')
        print('EVAR test accuracy per seed: ' + ', '.join(f'{s["score"]:.4f}' for s in evar['scores']))


if __name__ == '__main__':
    main()
