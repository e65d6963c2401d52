"""Speech data: corpus synthesis throughput and the JAX front ends against librosa.

1. Corpus synthesis: ``synthesize_corpus(size)`` from scratch (espeak-ng in a fresh worker
   process, 16 kHz resampling, channel conditions), reported as seconds of audio per wall second
   (times real time) and utterances / word segments per second.
2. Front ends on 2-s word segments of that corpus: geomjax's JAX ``log_mel``, ``mfcc`` and
   ``ds2_spectrogram`` over all segments (batches of 512) against librosa on a subset, same
   float32 input. Agreement (max |diff| against librosa in float64) is checked before any speed is
   reported; librosa's per-clip time is measured on the subset and scaled to the full count
   (marked "extrapolated"). The cochleagram has no librosa counterpart and is timed alone.

Usage::

    python -m benchmarks.bench_data            # small corpus, 8,000 segments; records results
    python -m benchmarks.bench_data --smoke    # tiny corpus, a few segments, nothing recorded
"""

from __future__ import annotations

import os
import resource
import time

from benchmarks._common import _cpu, base_parser, md_table, peak_rss_mb, record, time_call

os.environ.setdefault("TQDM_DISABLE", "1")

# librosa references (float64 in, float64 out), matched to geomjax's defaults
_TOL = {"log_mel": 2e-3, "mfcc": 2e-2, "ds2": 1e-3}  # max |diff| allowed (float32 vs float64)


def _librosa(kind, y):
    import librosa
    import numpy as np
    import scipy.signal

    if kind == "log_mel":
        S = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=400, hop_length=160, n_mels=23)
        return np.log(S + 1e-6).T
    if kind == "mfcc":
        return librosa.feature.mfcc(y=y, sr=16000, n_mfcc=40, n_fft=512, win_length=400,
                                    hop_length=160, n_mels=40).T
    S = librosa.stft(y, n_fft=320, hop_length=160, win_length=320,
                     window=scipy.signal.windows.hamming)
    return np.log1p(np.abs(S)).T


def bench_synthesis(size: str, seed: int = 0):
    from geomjax.data import synthesize_corpus

    def cpu_all():  # this process and its finished children (the espeak-ng worker, sox)
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        return _cpu() + c.ru_utime + c.ru_stime

    c0, t0 = cpu_all(), time.perf_counter()
    corpus = synthesize_corpus(size, seed=seed, progress=False)
    wall = time.perf_counter() - t0
    cpu = cpu_all() - c0
    audio_s = corpus.duration_s
    row = {"corpus": size, "utterances": len(corpus), "speakers": corpus.speakers.shape[0],
           "word tokens": len(corpus.words), "audio_s": round(audio_s, 1),
           "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
           "x real time": round(audio_s / wall, 1),
           "utt/s": round(len(corpus) / wall, 1),
           "skipped": len(corpus.info.get("skipped", []))}
    return corpus, row


def bench_features(audio, n_ref: int, repeat: int, batch_size: int = 512):
    import numpy as np

    from geomjax.data import featurize

    rows = []
    n = audio.shape[0]
    sub = audio[:n_ref]
    for kind in ("log_mel", "mfcc", "ds2"):
        ref = np.stack([_librosa(kind, y.astype(np.float64)) for y in sub[:2]])  # numba warm-up
        c0, t0 = _cpu(), time.perf_counter()
        ref = np.stack([_librosa(kind, y.astype(np.float64)) for y in sub])
        t_lib, c_lib = time.perf_counter() - t0, _cpu() - c0
        got_sub = featurize(sub, kind, batch_size=batch_size)
        err = float(np.max(np.abs(got_sub.astype(np.float64) - ref)))
        if not err < _TOL[kind]:
            raise AssertionError(f"{kind}: geomjax and librosa disagree (max |diff| {err:.3g} >= "
                                 f"{_TOL[kind]}); no speed is reported for a wrong answer.")
        out, tm = time_call(featurize, audio, kind, batch_size=batch_size, repeat=repeat)
        rows.append({
            "front end": kind, "clips": n, "shape": "x".join(map(str, out.shape[1:])),
            "geomjax_s": round(tm.wall_s, 2), "geomjax cpu_s": round(tm.cpu_s, 2),
            "geomjax first call_s": round(tm.first_call_s, 2),
            "librosa_s": round(t_lib / len(sub) * n, 2),
            "librosa cpu_s": round(c_lib / len(sub) * n, 2),
            "librosa measured on": f"{len(sub)} clips" + (" (extrapolated)" if len(sub) < n
                                                          else ""),
            "speed-up": round(t_lib / len(sub) * n / tm.wall_s, 1),
            "max abs diff vs librosa": float(f"{err:.3g}"),
        })
    return rows


def bench_cochleagram(audio, repeat: int):
    import numpy as np

    from geomjax.data import featurize

    out, tm = time_call(lambda: featurize(audio, "cochleagram", batch_size=32), repeat=repeat)
    assert np.all(np.isfinite(out)) and out.shape[1:] == (256, 256)
    return {"front end": "cochleagram 256x256", "clips": audio.shape[0],
            "geomjax_s": round(tm.wall_s, 2), "geomjax cpu_s": round(tm.cpu_s, 2),
            "geomjax first call_s": round(tm.first_call_s, 2),
            "ms/clip": round(1000 * tm.wall_s / audio.shape[0], 1)}


def main(argv=None):
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--size", default=None, help="corpus size (default small; tiny with --smoke)")
    p.add_argument("--segments", type=int, default=None, help="2-s segments to featurise")
    p.add_argument("--librosa-clips", type=int, default=None)
    args = p.parse_args(argv)
    size = args.size or ("tiny" if args.smoke else "small")
    n_seg = args.segments or (12 if args.smoke else 8000)
    n_ref = args.librosa_clips or (4 if args.smoke else 400)
    repeat = 1 if args.smoke else max(1, args.repeat - 2)
    import numpy as np

    corpus, syn = bench_synthesis(size)
    print(md_table([syn]))
    audio, _ = corpus.word_segments(seed=0)
    if audio.shape[0] < n_seg:  # tile the segment list to reach the requested count
        audio = audio[np.arange(n_seg) % audio.shape[0]]
    audio = np.ascontiguousarray(audio[:n_seg])
    feats = bench_features(audio, min(n_ref, n_seg), repeat)
    print(md_table(feats))
    coch = bench_cochleagram(audio[: (4 if args.smoke else 256)], repeat)
    print(md_table([coch]))
    logmel = next(r for r in feats if r["front end"] == "log_mel")
    total = {"step": f"{size} corpus synthesised + log-Mel of {n_seg} segments",
             "wall_s": round(syn["wall_s"] + logmel["geomjax_s"], 1),
             "peak RSS MB": round(peak_rss_mb())}
    print(md_table([total]))
    md = ("The machine's 2 cores were shared with other jobs during this run (load average "
          f"{os.getloadavg()[0]:.0f}), so wall times are inflated; cpu_s is the CPU time this "
          "benchmark itself used.\n\n"
          "Corpus synthesis (espeak-ng worker + resampling + channels, from scratch, no cache):\n\n"
          + md_table([syn]) + "\n\nJAX front ends vs librosa on 2-s word segments (float32 in; "
          "agreement checked before timing; geomjax time excludes the first, compiling call):"
          "\n\n" + md_table(feats) + "\n\n" + md_table([coch]) + "\n\n" + md_table([total]))
    record("data: corpus synthesis and front ends", md, smoke=args.smoke or args.no_record)
    return syn, feats, coch


if __name__ == "__main__":
    main()
