"""Zero-shot classification: EVAR's caption rules, templates and captions files, prompt ensembles, zeroshot.py end to
end with a tiny random CLAP on the shared ESC-50 subset (accuracy against a numpy reference from the cached
embeddings), and the caption-likelihood route with a fake generative model on a multi-label task (mAP against a
reference computed here)."""

import csv
import json

import numpy as np
import pytest
import torch

from helpers import ROOT, SHARED, needs_shared, run_script

from evar.captions import class_captions, ensemble_embeddings, evar_caption, parse_templates
from evar.errors import EvarError


def test_evar_rules(tmp_path):
    assert evar_caption('esc50', 'crackling_fire') == 'crackling fire can be heard'
    assert evar_caption('cremad', 'ANG') == 'angry person talking can be heard'
    assert evar_caption('gtzan', 'hiphop') == 'hiphop music can be heard'
    assert evar_caption('nsynth', 'brass') == 'the musical instrument sound of brass can be heard'
    (tmp_path / 'metadata').mkdir()
    (tmp_path / 'metadata' / 'class_labels_indices.csv').write_text(
        'index,mid,display_name\n0,/m/09x0r,Speech\n1,/m/07q6cd_,"Accelerating, revving, vroom"\n')
    caps = class_captions('as20k', ['/m/07q6cd_', '/m/09x0r'], work_root=tmp_path)
    assert caps.captions == (('Accelerating, revving, vroom can be heard',), ('Speech can be heard',))
    fsd = class_captions('fsd50k', ['Accelerating_and_revving_and_vroom', 'Not_in_ontology'], work_root=tmp_path)
    assert fsd.captions == (('Accelerating, revving, vroom can be heard',), ('Not in ontology can be heard',))
    with pytest.raises(EvarError, match='class_labels_indices.csv'):
        class_captions('as', ['/m/09x0r'], work_root=tmp_path / 'elsewhere')
    with pytest.raises(EvarError, match='emotion codes'):
        evar_caption('cremad', 'angry')


def test_templates_and_captions_file(tmp_path):
    caps = class_captions('esc50', ['dog', 'door_wood_knock'], templates=['the sound of {}', '{} heard'])
    assert caps.captions == (('the sound of dog', 'dog heard'), ('the sound of door wood knock', 'door wood knock heard'))
    texts, owner = caps.flat()
    assert texts[2] == 'the sound of door wood knock' and owner.tolist() == [0, 0, 1, 1]
    assert parse_templates('a {}') == ('a {}',)
    with pytest.raises(EvarError, match=r'exactly one \{\}'):
        parse_templates(['no placeholder'])
    path = tmp_path / 'caps.yaml'
    path.write_text('dog: [a dog barks, barking]\ndoor_wood_knock: someone knocks\n')
    caps = class_captions('esc50', ['dog', 'door_wood_knock'], templates=['ignored {}'], captions_file=path)
    assert caps.captions == (('a dog barks', 'barking'), ('someone knocks',))
    path.write_text('dog: a dog\n')
    with pytest.raises(EvarError, match=r"no caption for 1 class\(es\).*door_wood_knock"):
        class_captions('esc50', ['dog', 'door_wood_knock'], captions_file=path)


def test_prompt_ensemble_is_the_renormalised_mean_of_normalised_embeddings():
    text = np.array([[3.0, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 2.0, 0]])
    classes = ensemble_embeddings(text, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(classes, [[2 ** -0.5, 2 ** -0.5, 0, 0], [0, 0, 1, 0]], atol=1e-15)


@needs_shared
@pytest.mark.slow
def test_script_on_esc50_with_tiny_clap_matches_numpy_reference(tmp_path):
    from evar.metadata import main as metadata_main
    from helpers.tiny_models import tiny_hf

    values = tiny_hf(tmp_path / 'models', 'clap')
    config = tmp_path / 'clap.yaml'
    config.write_text('audio_repr: hf\n' + ''.join(f'{k}: {v}\n' for k, v in values.items()))
    work = tmp_path / 'work'
    assert metadata_main(['esc50', str(SHARED / 'data' / 'ESC-50'), '--work_root', str(work)]) == 0
    proc = run_script('zeroshot.py', config, 'esc50', '--templates', "['the sound of {}', '{} can be heard']",
                      '--work_root', work, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / 'results' / 'scores.csv', newline='') as f:
        (row,) = list(csv.DictReader(f))
    assert (row['task'], row['mode'], row['head'], row['metric']) == ('zs_esc50', 'zeroshot', 'cosine', 'accuracy')

    # Reference: every clip of the metadata (all folds' test clips), cosine with the ensembled class embeddings.
    with open(work / 'metadata' / 'esc50.csv', newline='') as f:
        meta = list(csv.DictReader(f))
    cached = {json.loads(p.read_text()).get('kind', 'clip'): np.load(p.with_suffix('.npy'))
              for p in (work / 'cache').glob('embs-*.json')}
    audio, text = cached['clip'].astype(np.float64), cached['text'].astype(np.float64)
    classes = sorted({r['label'] for r in meta})
    assert audio.shape[0] == len(meta) == 414 and text.shape[0] == 2 * len(classes)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    class_embs = text[0::2] + text[1::2]  # captions are listed class by class, two templates each
    sim = audio @ class_embs.T  # argmax ignores both norms
    expected = np.mean(sim.argmax(1) == np.array([classes.index(r['label']) for r in meta]))
    assert float(row['score']) == pytest.approx(expected, abs=5e-6)  # the CSV keeps 5 decimals
    log_dir = next((tmp_path / 'logs').glob('clap-zs_esc50-*'))
    with open(log_dir / 'predictions.csv', newline='') as f:
        assert len(list(csv.DictReader(f))) == 414
    with open(log_dir / 'captions.csv', newline='') as f:
        assert next(csv.DictReader(f)) == {'class': 'airplane', 'caption': 'the sound of airplane'}


class FakeCaptioner(torch.nn.Module):
    """A stand-in generative model: log-likelihood of text t given clip b = -|100 rms(b) - len(t) / 10|."""

    def caption_log_likelihood(self, wav, lengths, texts):
        rms = torch.stack([wav[i, :n].square().mean().sqrt() for i, n in enumerate(lengths.tolist())])
        lens = torch.tensor([len(t) / 10 for t in texts], dtype=wav.dtype)
        return -(100 * rms[:, None] - lens[None, :]).abs()


@needs_shared
def test_likelihood_route_on_a_multi_label_task_matches_reference(tmp_path, monkeypatch):
    from evar.audio import load_audio
    from evar.embed.source import TaskEmbeddings
    from evar.modes.zeroshot import zeroshot

    esc = SHARED / 'data' / 'ESC-50'
    with open(esc / 'meta' / 'esc50.csv', newline='') as f:
        clips = list(csv.DictReader(f))[:24]
    labels = ['dog,rain', 'rain', 'dog', 'wind,dog', 'wind']
    with open(tmp_path / 'ml.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['file_name', 'label', 'split'])
        for i, c in enumerate(clips):
            writer.writerow([f'audio/{c["filename"]}', labels[i % 5], ('train', 'valid', 'test')[i % 3]])
    task = tmp_path / 'ml.yaml'
    task.write_text(f'metadata: ml.csv\ndata: {esc}\nunit_sec: 5.0\nmetric: mAP\n')
    monkeypatch.setattr(TaskEmbeddings, 'model', lambda self: FakeCaptioner())
    templates = ['{}', 'a recording of {}']
    result = zeroshot(ROOT / 'config' / 'melspec.yaml', task, templates=templates, work_root=tmp_path / 'work',
                      results_dir=tmp_path / 'results', logs_dir=tmp_path / 'logs', progress=False)
    assert result.route == 'likelihood' and result.classes == ('dog', 'rain', 'wind')

    test = [i for i in range(24) if i % 3 == 2]
    rms = np.array([np.sqrt(np.mean(load_audio(esc / 'audio' / clips[i]['filename'], 16000)[0].astype(np.float64)
                                    ** 2)) for i in test])
    # the default caption_pool: a class scores as its best caption
    scores = np.stack([np.max([-np.abs(100 * rms - len(t.format(c)) / 10) for t in templates], axis=0)
                       for c in result.classes], axis=1)
    # float32 audio and likelihoods in the fake model: 1e-4 relative is far above their rounding.
    np.testing.assert_allclose(result.scores, scores, rtol=1e-4)
    y = np.array([[c in labels[i % 5].split(',') for c in result.classes] for i in test])
    def ap(hit, score):  # precision at each positive, ranked by score (the clips' scores are distinct)
        hit = hit[np.argsort(-score)]
        return np.mean((np.cumsum(hit) / np.arange(1, len(hit) + 1))[hit])

    expected = np.mean([ap(y[:, k], result.scores[:, k]) for k in range(3) if y[:, k].any()])
    assert result.score == pytest.approx(expected, abs=1e-12) and result.metric == 'mAP'
    with open(tmp_path / 'results' / 'scores.csv', newline='') as f:
        (row,) = list(csv.DictReader(f))
    assert (row['task'], row['head'], row['metric']) == ('zs_ml', 'likelihood', 'mAP')
    assert 'likelihood, max over captions' in row['report'] and '"caption_pool":"max"' in row['settings']


def test_caption_pools_by_hand():
    from evar.modes.zeroshot import pool_captions

    scores = np.array([[-1.0, -3.0, -2.0, -0.5], [-4.0, -1.0, -6.0, -2.0]])  # 2 clips x 4 captions
    owner = np.array([0, 0, 1, 1])  # captions 0-1: class 0, captions 2-3: class 1
    np.testing.assert_array_equal(pool_captions(scores, owner, 2, 'max'), [[-1.0, -0.5], [-1.0, -2.0]])
    np.testing.assert_array_equal(pool_captions(scores, owner, 2, 'mean'), [[-2.0, -1.25], [-2.5, -4.0]])
    with pytest.raises(EvarError, match="caption_pool must be one of max, mean; got 'median'"):
        pool_captions(scores, owner, 2, 'median')


def test_model_without_text_side_stops_with_one_error(tmp_path, work):
    proc = run_script('zeroshot.py', ROOT / 'config' / 'melspec.yaml', 'demo', '--work_root', work, cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith('Error:')]
    assert proc.returncode == 1 and len(errors) == 1 and 'has no text side' in errors[0], proc.stderr
    assert not (tmp_path / 'results' / 'scores.csv').exists()
