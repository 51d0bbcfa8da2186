"""Tests for cloze-to-question rewriting: prompts, filters, cache, template rules, HTTP and local rewriters.

The HTTP rewriter talks only to a server started here on 127.0.0.1 with an ephemeral port.
"""

import collections
import http.server
import json
import logging
import pathlib
import threading
import time

import pytest

from class_jax.mining.rewrite import rewriter as rewrite
from class_jax.mining.rewrite import cache as rewrite_cache
from class_jax.mining.rewrite import filters as rewrite_filters
from class_jax.mining.rewrite import http_rewriter as rewrite_http
from class_jax.mining.rewrite import prompting
from class_jax.mining.rewrite import template_rewriter
from class_jax.runtime.errors import UserError

CLASS_LANGUAGES = ("ar", "bn", "de", "es", "fi", "fr", "it", "ja", "ko", "ru", "te", "ta", "ml", "kn", "zh", "en")

RECORDS = [
    {"qid": "q1", "lang": "en", "cloze": "_X_ wrote the novel Nineteen Eighty-Four.", "answer": "George Orwell",
     "answer_title": "George Orwell"},
    {"qid": "q2", "lang": "de", "cloze": "Die Zugspitze liegt in _X_.", "answer": "Bayern", "answer_title": "Bayern"},
    {"qid": "q3", "lang": "ja", "cloze": "大阪城は_X_によって築かれた。", "answer": "豊臣秀吉", "answer_title": "豊臣秀吉"},
    {"qid": "q4", "lang": "ru", "cloze": "Эрмитаж находится в _X_.", "answer": "Санкт-Петербурге",
     "answer_title": "Санкт-Петербург"},
]
GOOD_QUESTIONS = {
    RECORDS[0]["cloze"]: "Who wrote the novel Nineteen Eighty-Four?",
    RECORDS[1]["cloze"]: "In welchem Bundesland liegt die Zugspitze?",
    RECORDS[2]["cloze"]: "大阪城は誰によって築かれましたか？",
    RECORDS[3]["cloze"]: "В каком городе находится Эрмитаж?",
}


# ---------------------------------------------------------------------------------------------------------------
# A scripted OpenAI-compatible server.


class FakeChatServer:
    """Answers /v1/chat/completions following a per-cloze script of actions; counts what it receives.

    Actions, consumed one per request (the last one repeats): ("ok", question), ("status", code, headers),
    ("sleep", seconds, question), ("body", raw bytes).
    """

    def __init__(self):
        self.scripts: dict[str, list[tuple]] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.auth_headers: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.delay_s = 0.0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                del args

            def do_POST(self):  # pylint: disable=invalid-name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                cloze = body["messages"][-1]["content"].split("\n")[0].removeprefix("Cloze: ")
                with server.lock:
                    server.requests[cloze] += 1
                    server.auth_headers.append(self.headers.get("Authorization"))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    script = server.scripts.get(cloze, [("ok", GOOD_QUESTIONS.get(cloze, "What?"))])
                    action = script.pop(0) if len(script) > 1 else script[0]
                try:
                    time.sleep(server.delay_s)
                    self._act(action, body["model"])
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _act(self, action, model):
                if action[0] == "sleep":
                    time.sleep(action[1])
                    action = ("ok", action[2])
                if action[0] == "ok":
                    reply = {"id": "x", "object": "chat.completion", "model": model,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": action[1]},
                                          "finish_reason": "stop"}]}
                    self._send(200, json.dumps(reply).encode())
                elif action[0] == "status":
                    self._send(action[1], b'{"error": "scripted"}', action[2] if len(action) > 2 else {})
                elif action[0] == "body":
                    self._send(200, action[1])

            def _send(self, code, payload, headers=None):
                try:
                    self.send_response(code)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # The client timed out and left.

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def total_requests(self) -> int:
        return sum(self.requests.values())

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    """requests honours proxy variables; the local test server must be reached directly."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    fake = FakeChatServer()
    yield fake
    fake.stop()


class SleepRecorder:
    def __init__(self):
        self.delays = []

    def __call__(self, seconds):
        self.delays.append(seconds)


def http_rewriter(url: str, **overrides) -> tuple[rewrite_http.OpenAIChatRewriter, SleepRecorder]:
    settings = dict(base_url=url, model="test-model", api_key_env=None, timeout_s=2.0, max_retries=3,
                    backoff_base_s=0.5, backoff_max_s=4.0, concurrency=4)
    settings.update(overrides)
    sleeper = SleepRecorder()
    rewriter = rewrite_http.OpenAIChatRewriter(rewrite_http.HttpRewriterConfig(**settings),
                                               prompting.PromptLibrary(), sleep=sleeper)
    return rewriter, sleeper


def run(records, rewriter, **kwargs):
    report = rewrite.RewriteReport()
    outputs = list(rewrite.rewrite_records(records, rewriter, report=report, **kwargs))
    return outputs, report.as_dict(rewriter)


# ---------------------------------------------------------------------------------------------------------------
# HTTP rewriter.


def test_http_good_answers_keep_order_and_fields(server):
    rewriter, sleeper = http_rewriter(server.url)
    outputs, report = run(RECORDS, rewriter, batch_size=3)
    rewriter.close()
    assert [output["qid"] for output in outputs] == ["q1", "q2", "q3", "q4"]
    assert [output["question"] for output in outputs] == [GOOD_QUESTIONS[record["cloze"]] for record in RECORDS]
    assert outputs[0]["answer_title"] == "George Orwell"
    assert report["kept"] == 4 and report["rewritten"] == 4 and report["failed"] == {}
    assert server.total_requests() == 4 and sleeper.delays == []


def test_http_retries_5xx_and_429_with_exponential_backoff(server):
    cloze = RECORDS[0]["cloze"]
    server.scripts[cloze] = [("status", 503), ("status", 500), ("status", 429, {"Retry-After": "3"}),
                             ("ok", GOOD_QUESTIONS[cloze])]
    rewriter, sleeper = http_rewriter(server.url)
    outputs, report = run(RECORDS[:1], rewriter)
    assert outputs[0]["question"] == GOOD_QUESTIONS[cloze]
    assert server.requests[cloze] == 4
    assert report["rewriter"]["retries"] == 3
    # Jittered in [ceiling / 2, ceiling] with ceiling 0.5 * 2 ** retry; the 429's Retry-After (3 s) is honoured.
    assert 0.25 <= sleeper.delays[0] <= 0.5
    assert 0.5 <= sleeper.delays[1] <= 1.0
    assert sleeper.delays[2] >= 3.0


def test_http_gives_up_after_max_retries_and_counts_the_reason(server):
    cloze = RECORDS[0]["cloze"]
    server.scripts[cloze] = [("status", 502)]
    rewriter, sleeper = http_rewriter(server.url, max_retries=2)
    outputs, report = run(RECORDS[:2], rewriter)
    assert [output["qid"] for output in outputs] == ["q2"]
    assert report["failed"] == {"http_502": 1}
    assert server.requests[cloze] == 3 and len(sleeper.delays) == 2


def test_http_timeouts_are_retried_then_succeed_or_fail(server):
    slow_then_fast, always_slow = RECORDS[0]["cloze"], RECORDS[1]["cloze"]
    server.scripts[slow_then_fast] = [("sleep", 2.0, "ignored"), ("ok", GOOD_QUESTIONS[slow_then_fast])]
    server.scripts[always_slow] = [("sleep", 2.0, "ignored")]
    rewriter, _ = http_rewriter(server.url, timeout_s=0.5, max_retries=1)
    outputs, report = run(RECORDS[:2], rewriter)
    assert [output["question"] for output in outputs] == [GOOD_QUESTIONS[slow_then_fast]]
    assert report["failed"] == {"timeout": 1}
    assert server.requests[slow_then_fast] == 2 and server.requests[always_slow] == 2


@pytest.mark.parametrize("action, reason", [
    (("body", b"<html>Bad Gateway</html>"), "invalid_json"),
    (("body", b'{"choices": []}'), "missing_field"),
    (("body", b'{"choices": [{"message": {"content": null}}]}'), "missing_field"),
    (("ok", "   \n  "), "empty_text"),
    (("status", 400), "http_400"),
])
def test_http_garbage_is_a_counted_failure_without_retries(server, action, reason):
    cloze = RECORDS[0]["cloze"]
    server.scripts[cloze] = [action]
    rewriter, sleeper = http_rewriter(server.url)
    outputs, report = run(RECORDS, rewriter)
    assert [output["qid"] for output in outputs] == ["q2", "q3", "q4"]
    assert report["failed"] == {reason: 1}
    assert server.requests[cloze] == 1 and sleeper.delays == []


def test_http_connection_refused_is_retried_then_counted():
    probe = FakeChatServer()
    url = probe.url
    probe.stop()  # Nothing listens on this port any more.
    rewriter, sleeper = http_rewriter(url, max_retries=2)
    outputs, report = run(RECORDS[:1], rewriter)
    assert outputs == [] and report["failed"] == {"connection_error": 1} and len(sleeper.delays) == 2


def test_http_concurrency_is_bounded(server):
    server.delay_s = 0.15
    records = [dict(RECORDS[0], qid=f"q{index}", cloze=f"_X_ wrote book number {index} of the series.")
               for index in range(12)]
    rewriter, _ = http_rewriter(server.url, concurrency=3)
    started = time.monotonic()
    run(records, rewriter, batch_size=12)
    elapsed = time.monotonic() - started
    rewriter.close()
    assert server.max_in_flight == 3
    assert elapsed < 12 * 0.15  # Concurrent, not one after another.


def test_cache_resume_makes_no_second_call(server, tmp_path):
    cache_path = tmp_path / "rewrites.jsonl"
    rewriter, _ = http_rewriter(server.url)
    with rewrite_cache.RewriteCache(cache_path) as cache:
        first, report = run(RECORDS, rewriter, cache=cache)
    assert server.total_requests() == 4 and report["from_cache"] == 0
    rewriter, _ = http_rewriter(server.url)
    with rewrite_cache.RewriteCache(cache_path) as cache:
        second, report = run(RECORDS, rewriter, cache=cache)
    assert server.total_requests() == 4  # No new request.
    assert report["from_cache"] == 4 and report["rewritten"] == 0
    assert second == first


def test_failures_are_not_cached_and_are_retried_next_run(server, tmp_path):
    cache_path = tmp_path / "rewrites.jsonl"
    broken = RECORDS[2]["cloze"]
    server.scripts[broken] = [("body", b"garbage")]
    rewriter, _ = http_rewriter(server.url)
    with rewrite_cache.RewriteCache(cache_path) as cache:
        _, report = run(RECORDS, rewriter, cache=cache)
    assert report["failed"] == {"invalid_json": 1}
    server.scripts[broken] = [("ok", GOOD_QUESTIONS[broken])]
    before = server.total_requests()
    with rewrite_cache.RewriteCache(cache_path) as cache:
        outputs, report = run(RECORDS, rewriter, cache=cache)
    assert server.total_requests() - before == 1
    assert report["from_cache"] == 3 and len(outputs) == 4


def test_cache_key_changes_with_model_and_prompt(tmp_path):
    library = prompting.PromptLibrary()
    request = rewrite.RewriteRequest(**{key: RECORDS[0][key] for key in ("lang", "cloze", "answer")})
    keys = set()
    for model in ("a", "b"):
        config = rewrite_http.HttpRewriterConfig(base_url="http://127.0.0.1:1/v1", model=model, api_key_env=None)
        rewriter = rewrite_http.OpenAIChatRewriter(config, library)
        keys.add(rewrite_cache.cache_key(rewriter.config(), rewriter.prompt(request), "en", request.cloze,
                                         request.answer))
    prompt_dir = tmp_path / "prompts"
    prompt_dir.mkdir()
    demo = json.loads((prompting.PACKAGE_PROMPT_DIR / "en.json").read_text(encoding="utf-8"))
    demo["demonstrations"] = demo["demonstrations"][:1]
    (prompt_dir / "en.json").write_text(json.dumps(demo), encoding="utf-8")
    rewriter = rewrite_http.OpenAIChatRewriter(config, prompting.PromptLibrary(prompt_dir))
    keys.add(rewrite_cache.cache_key(rewriter.config(), rewriter.prompt(request), "en", request.cloze,
                                     request.answer))
    assert len(keys) == 3


def test_api_key_is_sent_but_never_logged_or_stored(server, tmp_path, monkeypatch, caplog):
    secret = "sk-test-7f3a9c0e-do-not-leak"
    monkeypatch.setenv("CLASS_JAX_TEST_API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    cloze = RECORDS[0]["cloze"]
    server.scripts[cloze] = [("status", 503), ("ok", GOOD_QUESTIONS[cloze])]
    server.scripts[RECORDS[1]["cloze"]] = [("body", b"garbage")]
    cache_path = tmp_path / "rewrites.jsonl"
    rewriter, _ = http_rewriter(server.url, api_key_env="CLASS_JAX_TEST_API_KEY")
    with rewrite_cache.RewriteCache(cache_path) as cache:
        _, report = run(RECORDS, rewriter, cache=cache, keep_rejected=True)
    assert set(server.auth_headers) == {f"Bearer {secret}"}
    assert report["rewriter"]["retries"] == 1  # The retry path, with its debug log, ran.
    assert caplog.records and secret not in caplog.text
    assert secret not in cache_path.read_text(encoding="utf-8")
    assert secret not in repr(rewriter) and secret not in json.dumps(rewriter.config())
    assert secret not in json.dumps(report)


def test_missing_api_key_variable_is_a_user_error(monkeypatch):
    monkeypatch.delenv("CLASS_JAX_UNSET_KEY", raising=False)
    with pytest.raises(UserError, match="CLASS_JAX_UNSET_KEY"):
        http_rewriter("http://127.0.0.1:1/v1", api_key_env="CLASS_JAX_UNSET_KEY")


# ---------------------------------------------------------------------------------------------------------------
# Cache durability.


def test_cache_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    with rewrite_cache.RewriteCache(path) as cache:
        cache.put_many([("k1", "Who?"), ("k2", "Wo liegt das?")])
    with open(path, "ab") as handle:
        handle.write(b'{"key": "k3", "quest')  # A kill in the middle of a write.
    with rewrite_cache.RewriteCache(path) as cache:
        assert cache.skipped_lines == 1 and len(cache) == 2
        assert cache.get("k2") == "Wo liegt das?" and cache.get("k3") is None
        cache.put("k4", "何ですか？")
    with rewrite_cache.RewriteCache(path) as cache:
        assert cache.skipped_lines == 1
        assert cache.get("k4") == "何ですか？" and len(cache) == 3


# ---------------------------------------------------------------------------------------------------------------
# Prompts.


def test_shipped_prompts_cover_the_class_languages_and_pass_the_filters():
    library = prompting.PromptLibrary()
    assert set(CLASS_LANGUAGES) <= set(library.languages())
    for lang in CLASS_LANGUAGES:
        prompt = library.get(lang)
        assert len(prompt.demonstrations) >= 3
        for demo in prompt.demonstrations:
            assert demo.cloze.count("_X_") == 1
            assert rewrite_filters.rejection_reason(demo.question, lang, demo.answer) is None, (lang, demo)


def test_chat_messages_alternate_demonstrations_and_end_with_the_cloze():
    prompt = prompting.PromptLibrary(mask_token="[MASK]").get("de")
    messages = prompting.chat_messages(prompt, "Die Zugspitze liegt in [MASK].", "Bayern")
    roles = [message["role"] for message in messages]
    assert roles == ["system"] + ["user", "assistant"] * len(prompt.demonstrations) + ["user"]
    assert "[MASK]" in messages[0]["content"] and "German" in messages[0]["content"]
    assert all("_X_" not in message["content"] for message in messages)  # Demonstrations were re-masked.
    assert messages[-1]["content"] == "Cloze: Die Zugspitze liegt in [MASK].\nAnswer: Bayern"


def test_missing_prompt_file_is_a_one_line_user_error(tmp_path):
    library = prompting.PromptLibrary(tmp_path)
    with pytest.raises(UserError) as error:
        library.get("sw")
    message = str(error.value)
    assert str(tmp_path / "sw.json") in message and "\n" not in message
    rewriter = rewrite_http.OpenAIChatRewriter(
        rewrite_http.HttpRewriterConfig(base_url="http://127.0.0.1:1/v1", model="m", api_key_env=None), library)
    with pytest.raises(UserError, match="sw.json"):
        list(rewrite.rewrite_records([dict(RECORDS[0], lang="sw")], rewriter))


@pytest.mark.parametrize("content, message", [
    ("{not json", "sw.json:1: invalid JSON"),
    ('{"language_name": "Swahili", "demonstrations": []}', "'demonstrations' must be a non-empty list"),
    ('{"language_name": "Swahili", "demonstrations": [{"cloze": "no mask", "answer": "a", "question": "q?"}]}',
     "demonstration 1: cloze must contain the mask"),
    ('{"lang": "de", "language_name": "Swahili", "demonstrations": []}', "'lang' is 'de'"),
])
def test_malformed_prompt_files_name_the_problem(tmp_path, content, message):
    (tmp_path / "sw.json").write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        prompting.PromptLibrary(tmp_path).get("sw")


def test_user_prompt_folder_is_used(tmp_path):
    data = {"lang": "sw", "language_name": "Swahili", "instruction": "Andika swali kwa {language_name} ({mask}).",
            "demonstrations": [{"cloze": "_X_ ni mji mkuu wa Kenya.", "answer": "Nairobi",
                                "question": "Mji mkuu wa Kenya ni upi?"}]}
    (tmp_path / "sw.json").write_text(json.dumps(data), encoding="utf-8")
    prompt = prompting.PromptLibrary(tmp_path).get("sw")
    assert prompt.instruction == "Andika swali kwa Swahili (_X_)."
    assert prompt.demonstrations[0].answer == "Nairobi"


@pytest.mark.parametrize("reply, question", [
    ("Question: Who wrote it?", "Who wrote it?"),
    ("\n\n“Wer schrieb das?”\nExplanation: ...", "Wer schrieb das?"),
    ("質問：誰が書きましたか？", "誰が書きましたか？"),
    ("  \n ", ""),
    ("<think>\nThe blank is a person.\n</think>\n\nWho wrote it?", "Who wrote it?"),
    ("<think>never closed", ""),
])
def test_clean_model_output(reply, question):
    assert prompting.clean_model_output(reply) == question


# ---------------------------------------------------------------------------------------------------------------
# Filters.


@pytest.mark.parametrize("question, lang, answer, reason", [
    ("Who wrote the novel Nineteen Eighty-Four?", "en", "George Orwell", None),
    ("Did GEORGE  ORWELL write the novel Nineteen Eighty-Four?", "en", "George Orwell", "answer_leaked"),
    ("大阪城を築いたのは豊臣秀吉ですか？", "ja", "豊臣秀吉", "answer_leaked"),
    ("ＰＡＲＩＳ is the capital of which country?", "en", "Paris", "answer_leaked"),
    ("Who built Osaka Castle?", "ja", "豊臣秀吉", "wrong_script"),
    ("大阪城是谁建造的？", "ja", "豊臣秀吉", "wrong_script"),  # Chinese, not Japanese: no kana.
    ("Кто построил этот замок в Осаке?", "ar", "القاهرة", "wrong_script"),
    ("Where is the Zugspitze located?", "de", "Bayern", "wrong_language"),
    ("Wo liegt die Zugspitze?", "de", "Bayern", None),
    ("Who?", "en", "George Orwell", "too_short"),
    ("Why " + "really " * 50 + "?", "en", "x", "too_long"),
    ("Who wrote _X_?", "en", "George Orwell", "mask_remaining"),
    ("George Orwell wrote it.", "en", "Eric Blair", "not_a_question"),
    ("ما هي عاصمة مصر؟", "ar", "القاهرة", None),
    ("경복궁은 어디에 있는가?", "ko", "서울", None),
    ("東京タワーはどこにあるか。", "ja", "東京都", None),
    ("Где находится Эрмитаж?", "ru", "Санкт-Петербурге", None),
    ("তাজমহল কোন শহরে অবস্থিত?", "bn", "আগ্রা", None),
])
def test_rejection_reason(question, lang, answer, reason):
    assert rewrite_filters.rejection_reason(question, lang, answer) == reason


def test_answer_title_leak_is_checked_without_disambiguator():
    question = "Which planet named Mercury is closest to the Sun?"
    assert rewrite_filters.rejection_reason(question, "en", "the innermost planet", "Mercury (planet)") == \
        "answer_title_leaked"
    config = rewrite_filters.RewriteFilterConfig(check_answer_title=False)
    assert rewrite_filters.rejection_reason(question, "en", "the innermost planet", "Mercury (planet)",
                                            config) is None


# ---------------------------------------------------------------------------------------------------------------
# Template rewriter.


@pytest.mark.parametrize("lang, cloze, answer, question", [
    ("en", "_X_ wrote the novel Nineteen Eighty-Four.", "George Orwell", "Who wrote the novel Nineteen Eighty-Four?"),
    ("en", "The Berlin Wall fell in _X_.", "1989", "The Berlin Wall fell in what year?"),
    ("en", "The city has _X_ inhabitants.", "35,000", "The city has how many inhabitants?"),
    ("de", "Die Zugspitze liegt in _X_.", "Bayern", "Die Zugspitze liegt wo?"),
    ("de", "Die Relativitätstheorie wurde von _X_ entwickelt.", "Albert Einstein",
     "Die Relativitätstheorie wurde von wem entwickelt?"),
    ("es", "_X_ es la capital de Perú.", "Lima", "¿Qué es la capital de Perú?"),
    ("fr", "Le Louvre a ouvert ses portes en _X_.", "1793", "Le Louvre a ouvert ses portes en quelle année ?"),
    ("ja", "大阪城は_X_によって築かれた。", "豊臣秀吉", "大阪城は誰によって築かれたか？"),
    ("ja", "金閣寺は_X_にある寺院である。", "京都市", "金閣寺はどこにある寺院であるか？"),
    ("ru", "Эрмитаж находится в _X_.", "Санкт-Петербурге", "Где Эрмитаж находится?"),
    ("ru", "Гагарин полетел в космос в _X_ году.", "1961", "В каком году Гагарин полетел в космос?"),
    ("ar", "ولد نجيب محفوظ في _X_.", "القاهرة", "أين ولد نجيب محفوظ؟"),
    ("ko", "경복궁은 _X_에 있다.", "서울", "경복궁은 어디에 있는가?"),
    ("ko", "이 다리는 _X_을 건너는 다리이다.", "한강", "이 다리는 무엇을 건너는 다리인가?"),
    ("zh", "故宫位于_X_。", "北京", "故宫在哪里？"),
    ("zh", "《三国演义》的作者是_X_。", "罗贯中", "《三国演义》的作者是谁？"),
    ("fi", "Tampere sijaitsee _X_.", "Pirkanmaalla", "Missä Tampere sijaitsee?"),
    ("fi", "Suomi liittyi Euroopan unioniin vuonna _X_.", "1995", "Minä vuonna Suomi liittyi Euroopan unioniin?"),
    ("bn", "তাজমহল _X_ শহরে অবস্থিত।", "আগ্রা", "তাজমহল কোন শহরে অবস্থিত?"),
    ("te", "చార్మినార్ _X_లో ఉంది.", "హైదరాబాద్", "చార్మినార్ ఎక్కడ ఉంది?"),
])
def test_template_questions(lang, cloze, answer, question):
    produced = template_rewriter.template_question(lang, cloze, answer, "_X_")
    assert produced == question
    assert rewrite_filters.rejection_reason(produced, lang, answer) is None


def test_template_rewriter_falls_back_cleanly():
    records = [dict(RECORDS[0]), dict(RECORDS[1]),
               {"qid": "sw", "lang": "sw", "cloze": "_X_ ni mji mkuu wa Kenya.", "answer": "Nairobi"},
               {"qid": "nomask", "lang": "en", "cloze": "No mask in this sentence at all.", "answer": "x"}]
    outputs, report = run(records, template_rewriter.TemplateRewriter(), keep_rejected=True)
    assert [output["rewrite_status"] for output in outputs] == [
        "ok", "ok", "failed/unsupported_language", "failed/no_rule_matched"]
    assert outputs[2]["question"] is None
    assert report["failed"] == {"unsupported_language": 1, "no_rule_matched": 1} and report["kept"] == 2


# ---------------------------------------------------------------------------------------------------------------
# Pipeline robustness.


class ExplodingRewriter(rewrite.Rewriter):
    """Raises on its first batch, works afterwards: one bad batch must not end the run."""

    def __init__(self):
        self.calls = 0

    def config(self):
        return {"kind": "exploding"}

    def rewrite(self, requests, on_result=None):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("boom")
        return [rewrite.RewriteResult(GOOD_QUESTIONS[request.cloze]) for request in requests]


def test_a_crashing_batch_is_counted_and_the_run_goes_on():
    outputs, report = run(RECORDS, ExplodingRewriter(), batch_size=2)
    assert [output["qid"] for output in outputs] == ["q3", "q4"]
    assert report["failed"] == {"rewriter_error": 2}


def test_filtered_rewrites_are_counted_by_reason():
    class EchoRewriter(rewrite.Rewriter):
        def config(self):
            return {"kind": "echo"}

        def rewrite(self, requests, on_result=None):
            return [rewrite.RewriteResult(request.cloze) for request in requests]

    outputs, report = run(RECORDS, EchoRewriter())
    assert outputs == [] and report["filtered"] == {"mask_remaining": 4}


def test_record_without_required_field_is_a_user_error():
    with pytest.raises(UserError, match="record 2 .*'answer'"):
        list(rewrite.rewrite_records([RECORDS[0], {"qid": "x", "lang": "en", "cloze": "_X_."}],
                                     template_rewriter.TemplateRewriter()))


# ---------------------------------------------------------------------------------------------------------------
# Local transformers rewriter, with a tiny GPT-2 built here whose greedy output is known.


def tiny_bigram_lm(chain: list[str], extra_vocab: list[str]):
    """A 1-layer GPT-2 whose blocks are zeroed, so the next token depends only on the current one: each token of
    `chain` is followed by the next one, and the last by EOS."""
    import tokenizers  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel

    words = ["<pad>", "<eos>"] + sorted(set(chain) | set(extra_vocab))
    vocab = {word: index for index, word in enumerate(words)}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    backend.decoder = tokenizers.decoders.WordPiece()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")
    size = len(words)
    config = transformers.GPT2Config(vocab_size=size, n_positions=512, n_embd=size, n_layer=1, n_head=1,
                                     eos_token_id=1, pad_token_id=0, tie_word_embeddings=False)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.transformer.ln_f.weight.fill_(1.0)
        model.transformer.wte.weight.copy_(torch.eye(size))
        normed = torch.nn.functional.layer_norm(torch.eye(size), (size,))
        successors = list(zip(chain, chain[1:] + ["<eos>"]))
        for current, following in successors:
            model.lm_head.weight[vocab[following]] += 10 * normed[vocab[current]]
    return model, tokenizer


def test_transformers_rewriter_uses_the_chat_template():
    from class_jax.mining.rewrite import local_rewriter  # pylint: disable=import-outside-toplevel

    model, tokenizer = tiny_bigram_lm(["assistant:", "Who", "wrote", "it?"], ["system:", "user:"])
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    rewriter = local_rewriter.TransformersRewriter("tiny-bigram", prompting.PromptLibrary(), model=model,
                                                  tokenizer=tokenizer, max_new_tokens=8, batch_size=3,
                                                  device="cpu")
    rendered = rewriter.render(rewrite.RewriteRequest("en", RECORDS[0]["cloze"], "George Orwell"))
    assert rendered.startswith("system: ") and rendered.endswith("assistant:")
    assert "Cloze: _X_ wrote the novel Nineteen Eighty-Four." in rendered
    outputs, report = run([RECORDS[0]] * 4, rewriter, batch_size=4)
    assert [output["question"] for output in outputs] == ["Who wrote it?"] * 4
    assert report["kept"] == 4 and rewriter.config()["chat_template"] is True


def test_transformers_rewriter_without_chat_template_continues_the_plain_prompt():
    from class_jax.mining.rewrite import local_rewriter  # pylint: disable=import-outside-toplevel

    model, tokenizer = tiny_bigram_lm(["Question:", "Wo", "liegt", "das?"], [])
    rewriter = local_rewriter.TransformersRewriter("tiny-bigram", prompting.PromptLibrary(), model=model,
                                                  tokenizer=tokenizer, max_new_tokens=8, device="cpu")
    request = rewrite.RewriteRequest("de", RECORDS[1]["cloze"], "Bayern")
    assert rewriter.render(request).endswith("Answer: Bayern\nQuestion:")
    assert rewriter.rewrite([request]) == [rewrite.RewriteResult("Wo liegt das?")]


def test_prompt_files_are_package_data():
    files = sorted(path.name for path in pathlib.Path(prompting.PACKAGE_PROMPT_DIR).glob("*.json"))
    assert [f"{lang}.json" for lang in sorted(CLASS_LANGUAGES)] == files
