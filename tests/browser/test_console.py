"""Browser tests of the approval console: the real debug binary, a real controller, Chromium.

Runs headless Chromium from the OS packages (`apt-get install chromium`) through Playwright
(PyPI), with no browser download: `executable_path` points at the system binary. scripts/test
installs both and runs this file after the cargo tests:

    target/moto-venv/bin/python -m unittest -v tests/browser/test_console.py

Environment: SQLCTL_BIN (default target/debug/sqlctl), CHROMIUM (default /usr/bin/chromium).

Each test applies its own requests to one temporary SQLCTL_HOME served by one controller and one
`sqlctl console --token` (deciding as `alice`; requests are applied as `rita`).
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from playwright.sync_api import expect, sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SQLCTL_BIN", os.path.join(ROOT, "target", "debug", "sqlctl"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-token-0123456789"
TIMEOUT_S = 60
QUESTION = "Which 5 customers have the highest account balance?"


class World:
    """The temp home, controller and console shared by the tests."""

    def __init__(self):
        if not os.access(BIN, os.X_OK):
            raise RuntimeError(f"{BIN} is missing: build it first (cargo build, or cargo test builds it)")
        self.home = tempfile.mkdtemp(prefix="sqlctl-browser-")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.home,
            "SQLCTL_HOME": self.home,
            "USER": "rita",
            "SQLCTL_LOG": "info",
        }
        self.procs = []
        self.run("init", "--scale", "0.01")
        self.controller_log = open(os.path.join(self.home, "controller.log"), "wb")
        self.spawn(
            ["controller", "--retry-period", "200ms", "--renew-deadline", "1s", "--lease-duration", "2s",
             "--resync", "2s"],
            stdout=subprocess.DEVNULL, stderr=self.controller_log)
        self.console_log = open(os.path.join(self.home, "console.log"), "wb")
        console = self.spawn(["console", "--addr", "127.0.0.1:0", "--as", "alice"],
                             extra_env={"SQLCTL_CONSOLE_TOKEN": TOKEN},
                             stdout=subprocess.PIPE, stderr=self.console_log)
        self.base = self._read_url(console)

    def spawn(self, args, extra_env=None, **kw):
        env = dict(self.env, **(extra_env or {}))
        p = subprocess.Popen([BIN, *args], env=env, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def _read_url(self, proc):
        found = {}

        def reader():
            line = proc.stdout.readline().decode()
            found["line"] = line

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(TIMEOUT_S)
        line = found.get("line", "")
        if "http://" not in line:
            raise RuntimeError(f"the console did not start: {line!r}\n{self.log('console.log')}")
        return "http://" + line.split("http://", 1)[1].split("/", 1)[0]

    def log(self, name):
        try:
            with open(os.path.join(self.home, name), "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def run(self, *args, stdin=None, check=True):
        p = subprocess.run([BIN, *args], env=self.env, input=stdin, capture_output=True, timeout=TIMEOUT_S)
        if check and p.returncode != 0:
            raise AssertionError(f"sqlctl {' '.join(args)} exited {p.returncode}:\n{p.stdout.decode()}\n{p.stderr.decode()}")
        return p

    def apply_sql(self, name, sql):
        spec = (f"apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: {name}\n"
                f"spec:\n  sql: {json.dumps(sql)}\n  catalog:\n    database: tpch\n")
        self.run("apply", "-f", "-", stdin=spec.encode())

    def apply(self, name, question=QUESTION):
        spec = (f"apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: {name}\n"
                f"spec:\n  question: {question}\n  catalog:\n    database: tpch\n")
        self.run("apply", "-f", "-", stdin=spec.encode())

    def get(self, name):
        return json.loads(self.run("get", name, "-o", "json").stdout)

    def wait_for(self, name, what, pred):
        deadline = time.time() + TIMEOUT_S
        while True:
            v = self.get(name)
            if pred(v):
                return v
            if time.time() > deadline:
                raise AssertionError(f"{name}: {what} not reached: {json.dumps(v)[:2000]}\n"
                                     f"controller log:\n{self.log('controller.log')}")
            time.sleep(0.1)

    def awaiting(self, name, round_=1):
        return self.wait_for(name, f"AwaitingApproval round {round_}",
                             lambda v: v.get("status", {}).get("phase") == "AwaitingApproval"
                             and v["status"].get("approvalRound") == round_)

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.controller_log.close()
        self.console_log.close()
        shutil.rmtree(self.home, ignore_errors=True)


class ConsoleInBrowser(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.world = World()
        cls.pw = sync_playwright().start()
        cls.browser = cls.pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

    @classmethod
    def tearDownClass(cls):
        cls.browser.close()
        cls.pw.stop()
        cls.world.close()

    def setUp(self):
        self.context = self.browser.new_context(base_url=self.world.base)
        self.context.set_default_timeout(TIMEOUT_S * 1000)
        self.page = self.context.new_page()
        # Script errors, and Content Security Policy violations (the CSP forbids inline script
        # and style: a page that needed them would report here).
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: "Content Security Policy" in m.text and self.errors.append(m.text))

    def tearDown(self):
        self.context.close()
        self.assertEqual(self.errors, [])

    def login(self):
        self.page.goto("/")
        expect(self.page).to_have_url(f"{self.world.base}/login?next=%2F")
        self.page.fill("input[name=token]", TOKEN)
        self.page.click("button[type=submit]")
        expect(self.page).to_have_url(f"{self.world.base}/")
        expect(self.page.locator("header .who")).to_have_text("alice")

    def mark(self):
        """Marks the document, so a later check can tell that no reload happened."""
        self.page.evaluate("window.__noReload = 1")

    def assert_not_reloaded(self):
        self.assertEqual(self.page.evaluate("window.__noReload"), 1, "the page was reloaded")

    def test_unauthenticated_requests_are_refused(self):
        self.world.apply("anon")
        v = self.world.awaiting("anon")
        self.page.goto("/requests/default/anon")
        expect(self.page).to_have_url(f"{self.world.base}/login?next=%2Frequests%2Fdefault%2Fanon")
        expect(self.page.locator("input[name=token]")).to_be_visible()
        # A wrong token stays on the login page.
        self.page.fill("input[name=token]", "not-the-token-at-all")
        self.page.click("button[type=submit]")
        expect(self.page.locator("main > .banner.error")).to_contain_text("Wrong token")
        # A forged decision without a session is refused and writes nothing.
        gen = v["status"]["generated"]
        res = self.context.request.post(f"{self.world.base}/requests/default/anon/approve", form={
            "csrf": "x", "uid": v["metadata"]["uid"], "generation": "1", "round": "1", "digest": gen["sqlDigest"]})
        self.assertEqual(res.status, 401)
        self.assertIn("Nothing was written", res.text())
        self.assertEqual(self.context.request.get(f"{self.world.base}/events").status, 401)
        self.assertEqual(self.world.get("anon")["status"]["phase"], "AwaitingApproval")
        self.assertNotIn("approval", self.world.get("anon")["status"])

    def test_list_open_and_approve_until_done(self):
        self.world.apply("approve-me")
        self.world.awaiting("approve-me")
        self.login()
        row = self.page.locator("a[href='/requests/default/approve-me']")
        expect(row).to_be_visible()
        # Live: a request applied while the list is open appears without a reload.
        expect(self.page.locator("#live")).to_have_attribute("data-state", "on")
        self.mark()
        self.world.apply("appears-live")
        expect(self.page.locator("a[href='/requests/default/appears-live']")).to_be_visible()
        self.assert_not_reloaded()
        self.page.click("a[href='/requests/default/approve-me']")
        expect(self.page).to_have_url(f"{self.world.base}/requests/default/approve-me")
        expect(self.page.locator("blockquote.question")).to_have_text(QUESTION)
        expect(self.page.locator("#review pre.sql .kw").first).to_be_visible()
        expect(self.page.locator("#review pre.sql")).to_contain_text("LIMIT 5")
        self.page.fill("form.approve input[name=comment]", "checked the columns")
        self.page.click("button.approve")
        expect(self.page).to_have_url(f"{self.world.base}/requests/default/approve-me?recorded=approve")
        expect(self.page.locator(".banner.ok")).to_contain_text("Your approval was recorded")
        # The controller runs it; the page follows without a reload.
        expect(self.page.locator("#live")).to_have_attribute("data-state", "on")
        self.mark()
        expect(self.page.locator("#status .phase")).to_have_text("Done")
        expect(self.page.locator("table.preview tbody tr")).to_have_count(5)
        self.assert_not_reloaded()
        v = self.world.get("approve-me")
        self.assertEqual(v["status"]["approval"]["by"], "alice")
        self.assertEqual(v["status"]["approval"]["comment"], "checked the columns")

    def test_a_charted_request_shows_its_chart_with_the_legend_it_names(self):
        # Issue 16: year × region × revenue draws one line per region; the console shows the
        # image (decoded by the browser, not just referenced) and its text names every series.
        sql = ("select extract(year from o_orderdate) as yr, r_name, sum(o_totalprice) as revenue "
               "from orders join customer on o_custkey = c_custkey join nation on c_nationkey = n_nationkey "
               "join region on n_regionkey = r_regionkey group by 1, 2 order by 1, 2")
        self.world.apply_sql("charted", sql)
        self.world.awaiting("charted")
        self.login()
        self.page.goto("/requests/default/charted")
        self.page.click("button.approve")
        expect(self.page.locator("#status .phase")).to_have_text("Done")
        img = self.page.locator("figure.chart img")
        expect(img).to_be_visible()
        self.page.wait_for_function(
            "() => { const i = document.querySelector('figure.chart img'); return i && i.complete && i.naturalWidth > 0; }")
        self.assertEqual(img.evaluate("i => [i.naturalWidth, i.naturalHeight]"), [800, 450])
        alt = img.get_attribute("alt")
        self.assertTrue(alt.startswith("line chart over yr;"), alt)
        for region in ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]:
            self.assertIn(region, alt)
        # The SVG itself carries the legend text, a <title> and a <desc> for screen readers.
        svg = self.page.evaluate(
            "() => atob(document.querySelector('figure.chart img').src.split(',')[1])")
        self.assertIn(">MIDDLE EAST</text>", svg)
        self.assertIn("<desc>line chart over yr;", svg)
        # Numbers are right-aligned by their type.
        expect(self.page.locator("table.preview td.num").first).to_be_visible()
        v = self.world.get("charted")
        self.assertEqual(v["status"]["execution"]["columns"][2]["role"], "measure")

    def test_refine_with_feedback_shows_the_new_sql_and_its_diff(self):
        self.world.apply("refine-me")
        first = self.world.awaiting("refine-me")["status"]["generated"]["sqlDigest"]
        self.login()
        self.page.goto("/requests/default/refine-me")
        self.page.fill("form.refine textarea[name=feedback]", "top 3 instead, lowest first")
        self.page.click("form.refine button[type=submit]")
        expect(self.page.locator(".banner.ok")).to_contain_text("Your feedback was recorded")
        expect(self.page.locator("#live")).to_have_attribute("data-state", "on")
        self.mark()
        # Round 2 arrives live: new SQL, the diff against the first, and fresh forms.
        expect(self.page.locator("#status .meta")).to_contain_text("round 2")
        expect(self.page.locator("#review pre.sql")).to_contain_text("LIMIT 3")
        expect(self.page.locator("#review pre.diff .del")).to_contain_text("LIMIT 5")
        expect(self.page.locator("#review pre.diff .add")).to_contain_text("LIMIT 3")
        expect(self.page.locator("button.approve")).to_be_visible()
        self.assert_not_reloaded()
        v = self.world.awaiting("refine-me", 2)
        self.assertNotEqual(v["status"]["generated"]["sqlDigest"], first)
        refined = [h for h in v["status"]["history"] if h.get("event") == "Refined"]
        self.assertEqual(refined[-1]["feedback"], "top 3 instead, lowest first")
        self.assertEqual(refined[-1]["by"], "alice")

    def test_a_stale_form_is_refused_and_nothing_is_written(self):
        self.world.apply("stale-me")
        v = self.world.awaiting("stale-me")
        self.login()
        # Hold live updates back, so the old form stays exactly as loaded.
        self.page.route("**/events", lambda route: route.abort())
        self.page.route("**/fragment", lambda route: route.abort())
        self.page.goto("/requests/default/stale-me")
        expect(self.page.locator("button.approve")).to_be_visible()
        # Meanwhile someone else refines it from the CLI: new SQL, round 2.
        self.world.run("refine", "stale-me", "--feedback", "top 3 instead", "--as", "bob",
                       "--digest", v["status"]["generated"]["sqlDigest"])
        v2 = self.world.awaiting("stale-me", 2)
        self.page.click("button.approve")
        refused = self.page.locator("main > .banner.error").first
        expect(refused).to_contain_text("changed since you loaded the page")
        expect(refused).to_contain_text("approval round 1 is now 2")
        expect(refused).to_contain_text("Nothing was written")
        # The refusal shows the SQL that is there now.
        expect(self.page.locator("#review pre.sql")).to_contain_text("LIMIT 3")
        time.sleep(1)
        v3 = self.world.get("stale-me")
        self.assertEqual(v3["status"]["phase"], "AwaitingApproval")
        self.assertEqual(v3["status"]["approvalRound"], 2)
        self.assertEqual(v3["status"]["generated"]["sqlDigest"], v2["status"]["generated"]["sqlDigest"])
        self.assertFalse([h for h in v3["status"].get("history", []) if h.get("by") == "alice"])

    def test_an_open_form_is_marked_stale_live(self):
        self.world.apply("moves-on")
        v = self.world.awaiting("moves-on")
        self.login()
        self.page.goto("/requests/default/moves-on")
        expect(self.page.locator("#live")).to_have_attribute("data-state", "on")
        self.page.fill("form.refine textarea[name=feedback]", "half-typed feedback")
        self.world.run("refine", "moves-on", "--feedback", "top 3 instead", "--as", "bob",
                       "--digest", v["status"]["generated"]["sqlDigest"])
        self.world.awaiting("moves-on", 2)
        expect(self.page.locator("#stale")).to_be_visible()
        # The form under the reviewer's cursor was not swapped: what they typed is still there.
        expect(self.page.locator("form.refine textarea[name=feedback]")).to_have_value("half-typed feedback")
        expect(self.page.locator("#status .meta")).to_contain_text("round 2")


if __name__ == "__main__":
    unittest.main(verbosity=2)
