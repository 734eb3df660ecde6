"""The embedding path: clip and frame embeddings of a task, cached by content."""

import numpy as np

from helpers import ROOT


def test_frame_embeddings_pool_to_the_clip_embeddings_and_are_cached(work):
    from evar.config import load_config
    from evar.data import read_metadata
    from evar.embed.extract import FrameEmbeddings
    from evar.embed.source import TaskEmbeddings
    from evar.tasks import get_task

    meta = read_metadata(work / 'metadata' / 'demo.csv')
    source = TaskEmbeddings(load_config(ROOT / 'config' / 'melspec.yaml'), get_task('demo'), meta, work, 'cpu',
                            progress=False)
    train = meta.split_indices(1)['train']
    clips = np.asarray(source.embeddings(1, train))
    frames = source.embeddings(1, train, level='frame')
    assert isinstance(frames, FrameEmbeddings) and len(frames) == len(meta) == len(clips)
    # 1-s clips at a 10 ms hop, centred frames: 101 frames each; melspec's mean_max is mean + max over frames.
    assert set(frames.lengths.tolist()) == {101}
    pooled = np.stack([frames.clip(i).mean(0) + frames.clip(i).max(0) for i in range(len(frames))])
    np.testing.assert_allclose(pooled, clips, rtol=1e-5, atol=1e-5)
    padded, mask = frames.padded([0, 3])
    assert padded.shape == (2, 101, 64) and mask.all()
    names = sorted(p.name for p in (work / 'cache').glob('*.npy'))
    assert len(names) == 3 and sum(n.startswith('frames-') for n in names) == 2  # values + offsets
    again = source.embeddings(1, train, level='frame', allow_compute=False)  # read back from the cache
    np.testing.assert_array_equal(np.asarray(again.values), frames.values)
    np.testing.assert_array_equal(again.offsets, frames.offsets)


def test_batches_are_bounded_by_samples_as_well_as_clips():
    from evar.embed.extract import CPU_BATCH_SAMPLES, ExtractSettings, batch_groups

    assert batch_groups(np.full(10, 100), 4, None) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # Padded to the longest clip: 3 x 400 fits 1,200 samples; a fourth clip would make 1,600.
    assert batch_groups(np.array([100, 400, 50, 100, 300, 2000, 10]), 16, 1200) == [[0, 1, 2], [3, 4], [5], [6]]
    assert ExtractSettings(device='cpu').sample_budget == CPU_BATCH_SAMPLES
    assert ExtractSettings(device='cuda').sample_budget is None


def test_long_whole_clips_are_embedded_a_few_at_a_time(tmp_path):
    import soundfile as sf
    import torch

    from evar.data import ClipDataset
    from evar.embed.extract import ExtractSettings, clip_samples, extract_embeddings
    from evar.models import create_model

    rng = np.random.default_rng(0)
    for i, sec in enumerate((3.0, 0.5, 2.0, 1.0)):
        sf.write(tmp_path / f'{i}.wav', rng.standard_normal(int(sec * 16000)).astype(np.float32) * 0.1, 16000)
    dataset = ClipDataset(tmp_path, [f'{i}.wav' for i in range(4)], 16000, 1.0, 'full')
    assert clip_samples(dataset, np.arange(4)).tolist() == [48000, 8000, 32000, 16000]
    model = create_model('melspec', sample_rate=16000, norm_stats=[0.0, 1.0])  # no training rows to take them from
    seen = []
    original = model.features

    def spy(wav, lengths):
        seen.append(tuple(wav.shape))
        return original(wav, lengths)

    model.features = spy
    small = extract_embeddings(model, dataset, np.arange(0), ExtractSettings(max_batch_samples=64000, progress=False))
    assert seen == [(1, 48000), (2, 32000), (1, 16000)]  # never more than 64,000 padded samples
    model.features = original
    whole = extract_embeddings(model, dataset, np.arange(0), ExtractSettings(progress=False))
    torch.testing.assert_close(torch.from_numpy(small), torch.from_numpy(whole), rtol=1e-5, atol=1e-5)
