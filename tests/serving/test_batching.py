"""Server-side batching (TF Serving's --enable_batching) on a real SavedModel: concurrent
requests share model calls, each gets what it would get alone (scores or its own refusal), a
full queue answers UNAVAILABLE, and TF Serving's parameters file is read."""
import re
import shutil
import threading
import time

import numpy as np
import pytest

from mbt_keras import contract
from serving.batching import BatchingParameters, BatchScheduler, parse_text
from serving.client import load_saved_model
from serving.model_versions import ModelVersions
from serving.request_error import RequestError
from serving.request_path import RequestPath
from tests.serving.conftest import MODEL_NAME, serving
from tests.serving.doors import GrpcDoor, Refused, RestDoor
from tests.serving.refusal_cases import bad_requests


def test_tf_serving_text_format_is_read_and_checked():
    text = """# as for tensorflow_model_server --batching_parameters_file
        max_batch_size { value: 16 }
        batch_timeout_micros { value: 2000 }
        max_enqueued_batches { value: 4 }
        num_batch_threads { value: 2 }
        thread_pool_name { value: "model_server_batch_threads" }
        allowed_batch_sizes: 4
        allowed_batch_sizes: 8
        allowed_batch_sizes: 16
        pad_variable_length_inputs: false"""
    parameters = BatchingParameters(**parse_text(text))
    assert parameters == BatchingParameters(16, 2000, 4, 2, (4, 8, 16))
    assert BatchingParameters(**parse_text(parameters.to_text())) == parameters
    assert parse_text("allowed_batch_sizes: [2, 4]") == {"allowed_batch_sizes": (2, 4)}
    for bad, message in {"max_batch_sise { value: 8 }": r"unknown .* field 'max_batch_sise'",
                         "max_batch_size { value: x }": r"expected an integer",
                         "max_batch_size { value: 8": r"unexpected end",
                         "pad_variable_length_inputs: true": r"does not pad"}.items():
        with pytest.raises(ValueError, match=message):
            parse_text(bad)
    with pytest.raises(ValueError, match=r"end with max_batch_size \(16\)"):
        BatchingParameters(max_batch_size=16, allowed_batch_sizes=(4, 8))
    with pytest.raises(ValueError, match=r"num_batch_threads must be >= 1"):
        BatchingParameters(num_batch_threads=0)


@pytest.fixture(scope="module")
def versions(exported, tmp_path_factory):
    base = tmp_path_factory.mktemp("batching_base")
    shutil.copytree(exported[1], base / MODEL_NAME / "1")
    loaded = ModelVersions(str(base), MODEL_NAME)
    loaded.poll_once()
    return loaded


def _variants(clip, count: int):
    """`count` requests of one clip each, each of its own audio (so a mix-up would show)."""
    wave = clip[contract.IN_WAVEFORM]
    return [{**clip, contract.IN_WAVEFORM: np.roll(wave, 800 * i, axis=1)} for i in range(count)]


def _concurrently(path: RequestPath, requests):
    """The outputs (or RequestError) of each request, all sent at once from their own threads."""
    results, start = [None] * len(requests), threading.Barrier(len(requests))

    def send(index):
        start.wait()
        try:
            results[index] = path.predict(MODEL_NAME, None, "", contract.SIG_SERVING,
                                          lambda specs: requests[index], _numpy)[2]
        except RequestError as exc:
            results[index] = exc
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _numpy(name, value, spec):
    return value


def test_concurrent_requests_share_model_calls_and_get_their_unbatched_scores(
        versions, clip_request):
    requests = _variants(clip_request, 8)
    alone = [RequestPath(versions).predict(MODEL_NAME, None, "", contract.SIG_SERVING,
                                           lambda specs, r=r: r, _numpy)[2] for r in requests]
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, batch_timeout_micros=200_000,
                                                  num_batch_threads=1, allowed_batch_sizes=(4, 8)))
    batched = _concurrently(RequestPath(versions, scheduler), requests)
    scheduler.stop()
    print(scheduler.summary())
    assert sum(scheduler.batch_sizes.values()) < len(requests), scheduler.batch_sizes  # merged
    assert sum(s * n for s, n in scheduler.batch_sizes.items()) == len(requests)
    for one, many in zip(alone, batched):
        assert not isinstance(many, Exception), many
        np.testing.assert_allclose(many[contract.OUT_SCORES], one[contract.OUT_SCORES], atol=1e-6)
        assert many[contract.OUT_TOP_K_NAMES].tolist() == one[contract.OUT_TOP_K_NAMES].tolist()
    assert not np.allclose(alone[0][contract.OUT_SCORES], alone[1][contract.OUT_SCORES])


def test_a_refusal_in_a_merged_batch_reaches_only_its_request_worded_as_unbatched(
        versions, clip_request):
    cases = bad_requests(clip_request)
    bad = [cases[p].inputs for p in ("NaN sample", "unsampled frame truncated", "1x1 JPEG")]
    requests = _variants(clip_request, 5)
    requests[1:4] = bad
    unbatched = RequestPath(versions)
    expected = []
    for inputs in requests:
        try:
            expected.append(unbatched.predict(MODEL_NAME, None, "", contract.SIG_SERVING,
                                              lambda specs, i=inputs: i, _numpy)[2])
        except RequestError as exc:
            expected.append(exc)
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, batch_timeout_micros=200_000,
                                                  num_batch_threads=1))
    batched = _concurrently(RequestPath(versions, scheduler), requests)
    scheduler.stop()
    assert max(scheduler.batch_sizes) > 1, scheduler.batch_sizes
    for want, got in zip(expected, batched):
        if isinstance(want, RequestError):
            assert isinstance(got, RequestError) and (got.code, str(got)) == (want.code, str(want))
        else:
            np.testing.assert_allclose(got[contract.OUT_SCORES], want[contract.OUT_SCORES],
                                       atol=1e-6)


def test_a_full_queue_answers_unavailable_and_a_too_large_request_is_refused(
        versions, clip_request):
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=1, max_enqueued_batches=1,
                                                  num_batch_threads=1))
    results = _concurrently(RequestPath(versions, scheduler), _variants(clip_request, 12))
    refused = [r for r in results if isinstance(r, RequestError)]
    assert refused and all(r.code == "UNAVAILABLE" and "queue is full" in str(r) for r in refused)
    assert len(refused) < len(results)
    two = {name: np.concatenate([value, value]) for name, value in clip_request.items()}
    with pytest.raises(RequestError, match="batch size 2 is larger than the maximum batch size 1"):
        RequestPath(versions, scheduler).predict(MODEL_NAME, None, "", contract.SIG_SERVING,
                                                 lambda specs: two, _numpy)
    scheduler.stop()


def test_server_with_enable_batching_merges_both_doors_and_sheds_load_with_unavailable(
        exported, clip_request, tmp_path):
    """16 clients at once (8 gRPC, 8 REST) against `mbt serve --enable-batching` whose queue
    holds one waiting batch: some are told UNAVAILABLE (503) and retry, all end with the
    scores they get unbatched, in fewer model calls than requests."""
    parameters = tmp_path / "batching.txt"
    parameters.write_text("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 20000 }\n"
                          "num_batch_threads { value: 1 }\n")
    requests = _variants(clip_request, 16)
    alone = load_saved_model(exported[1])
    expected = [alone(r)[contract.OUT_SCORES] for r in requests]
    with serving(exported[1], tmp_path / "base", "--enable-batching",
                 "--batching-parameters-file", str(parameters), "--max-enqueued-batches",
                 "1") as (target, _, log, rest_url, _):
        doors = [GrpcDoor(target) if i % 2 else RestDoor(rest_url) for i in range(16)]
        results, codes, start = [None] * 16, [], threading.Barrier(16)

        def send(index):
            start.wait()
            while results[index] is None:
                try:
                    results[index] = doors[index].predict(requests[index])[0]
                except Refused as exc:
                    codes.append(exc.code)
                    time.sleep(0.02)  # a client backs off before it retries
        threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for want, got in zip(expected, results):
        np.testing.assert_allclose(got[contract.OUT_SCORES], want, atol=1e-6)
    assert codes and set(codes) == {"UNAVAILABLE"}, codes
    deadline = time.monotonic() + 10  # the summary is the stopped server's last line
    while not any("model calls" in line for line in log) and time.monotonic() < deadline:
        time.sleep(0.1)
    summary = next(line for line in log if "model calls" in line)
    clips, calls = map(int, re.search(r"(\d+) clips in (\d+) model calls", summary).groups())
    print(summary.strip(), f"; UNAVAILABLE answers: {len(codes)}")
    assert clips == 16 and calls < clips
