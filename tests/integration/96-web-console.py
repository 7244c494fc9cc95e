# Proves the web console (web/, served by the gateway at /) in headless Chromium driven by
# Selenium: the page logs in with an admin token; a value a device publishes appears on its device
# page within a second without reload (measured from the publish); a function invoked from the page
# reaches a paho MQTT device on its command topic and its reply (success with outputs, or its own
# error) appears on the page; a rw property written from the page reaches the device, its
# success is shown; leaving the device page
# releases its /api/stream; the device list pages through 2,000 devices with the API's cursors
# (every id once, in order), goes back, searches; a read token (logged in from the keyboard
# alone) sees values and the chart but no invoke button and no write form; Tab reaches the skip
# link, navigation and Log out; at a phone's width no page scrolls sideways; the browser log has
# no error. IOTGW_SCREENSHOTS=1 writes docs/console-overview.png and docs/console-device.png.
import os
import shutil
import time

import cmdlib as cl
import gwapi
import gwtest as g

N_DEVICES = 2000
PAGE = 50  # web/assets/devices.js's page size
SHOW_WITHIN_S = 1.0  # publish -> value on the page (the bound)
SRC = os.environ.get("IOTGW_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
SHOTS = os.environ.get("IOTGW_SCREENSHOTS") == "1"
PROFILE = os.path.join(os.environ.get("TMPDIR", "/tmp"), "iotgw-chrome-%d" % os.getpid())


def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
              "--disable-background-networking", "--disable-sync", "--mute-audio",
              "--user-data-dir=" + PROFILE):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_page_load_timeout(30 * g.SLOW)
    d.set_script_timeout(30 * g.SLOW)
    return d


class Browser:
    def __init__(self, base):
        from selenium.webdriver.common.by import By
        self.By = By
        self.base = base
        self.d = chrome()
        self.log = []  # every browser log entry seen

    def drain_log(self):
        got = self.d.get_log("browser")
        self.log.extend(got)
        return got

    def find(self, css):
        els = self.d.find_elements(self.By.CSS_SELECTOR, css)
        return els[0] if els else None

    def all(self, css):
        return self.d.find_elements(self.By.CSS_SELECTOR, css)

    def wait(self, css, timeout=10.0, visible=True):
        def ok():
            e = self.find(css)
            return e if e is not None and (not visible or e.is_displayed()) else None
        return until(ok, timeout, interval=0.02)

    def text(self, css):
        e = self.find(css)
        try:
            return e.text if e is not None else None
        except Exception:  # stale: re-rendered meanwhile
            return None

    def login(self, token, keyboard=False):
        from selenium.webdriver.common.keys import Keys
        self.d.get(self.base + "/")
        inp = self.wait("#token", 20)
        if inp is None:
            return False
        if keyboard:  # the login form has the focus; Enter submits it
            self.d.switch_to.active_element.send_keys(token + Keys.ENTER)
        else:
            inp.send_keys(token)
            self.find("#login-btn").click()
        return self.wait("#nav a[data-nav='devices']", 10) is not None

    def row_ids(self):
        """The data-id of every row of the device list (read in the page: no stale elements)."""
        return self.d.execute_script(
            "return Array.from(document.querySelectorAll('#dev-rows tr[data-id]'))"
            ".map(r => r.dataset.id)")

    def go(self, hash_):
        self.d.execute_script("location.hash = arguments[0]", hash_)

    def quit(self):
        try:
            self.d.quit()
        except Exception:
            pass
        shutil.rmtree(PROFILE, ignore_errors=True)


def until(pred, timeout=10.0, interval=0.02):
    """gwtest.wait_until, None when the condition never held (it returns the last falsy value)."""
    return g.wait_until(pred, timeout, interval=interval) or None


def severe(entries):
    return [e for e in entries if e.get("level") == "SEVERE"]


def main():
    t = g.Results("96-web-console")
    gw = g.Gateway(devices=g.make_devices(g.thermo_ids(N_DEVICES)), loops=2,
                   config={"admin": {"web_root": os.path.abspath(os.path.join(SRC, "web")),
                                     "stream_clients_max": 4}})
    br = None
    dev = None
    try:
        have = shutil.which("chromium") and os.path.exists("/usr/bin/chromedriver")
        if not t.check(have, "chromium and chromedriver are installed (deploy/install-deps.sh)"):
            raise RuntimeError("no chromium/chromedriver")
        # a device on MQTT (paho), subscribed to its command topics
        def answer(topic, d):  # delay_s 42: the device's own error reply
            if (d.get("inputs") or {}).get("delay_s") == 42:
                return {"messageId": d["messageId"], "success": False, "error": "E42",
                        "message": "overheated"}
            return cl.ok_reply(topic, d)
        dev = cl.Device(gw, "t-001", answer=answer)
        br = Browser("http://%s:%d" % (g.HOST, gw.admin_port))
        t.check(br.login(gwapi.ADMIN_TOKEN), "logs in with the admin token",
                br.text("#login-error"))
        # read until set: under ASan the first render may still be under way
        t.eq(until(lambda: br.text("#who") or None, 5, interval=0.02), "admin",
             "the header shows the admin role")
        t.check(br.wait(".cards .stat", 10) is not None, "the overview shows its figures")
        if SHOTS:  # messages flowing while the overview refreshes, so that its rates show
            for i in range(50):
                dev.report({"temperature": 20 + (i % 10) * 0.3, "humidity": 40 + i % 5}, "s%d" % i)
                time.sleep(0.08)
            br.d.save_screenshot(os.path.join(SRC, "docs", "console-overview.png"))

        # ---- live value on the device page ----
        br.go("#/devices/t-001")
        t.check(until(lambda: br.text("#live-state") == "live", 10) is not None,
                "the device page's stream is open", br.text("#live-state"))
        t.check(br.wait("#prop-temperature", 10) is not None, "the property table is shown")
        worst = 0.0
        for i, v in enumerate((21.25, 22.5, 23.75)):
            t0 = time.monotonic()
            dev.report({"temperature": v}, "live%d" % i)
            shown = until(lambda: br.text("#prop-temperature") == str(v), 5, interval=0.005)
            dt = time.monotonic() - t0
            worst = max(worst, dt)
            t.check(shown is not None, "published temperature %s shown on the page without reload"
                    % v, br.text("#prop-temperature"))
        t.info("publish -> shown on the device page: worst of 3 %.0f ms" % (worst * 1000))
        t.check(worst <= SHOW_WITHIN_S * g.SLOW, "each value shown within %.1f s (worst %.0f ms)"
                % (SHOW_WITHIN_S * g.SLOW, worst * 1000))
        t.check(until(lambda: "temperature=23.75" in (br.text("#feed") or ""), 5)
                is not None, "the event feed shows the report")
        t.check(br.find(".chart-area svg path.line") is not None, "the chart draws the history")

        # ---- a function invoked from the page reaches the device; its reply is shown ----
        btn = br.wait("#invoke-reboot", 10)
        t.check(btn is not None, "an admin token sees the invoke button")
        if btn is not None:
            form = btn.find_element(br.By.XPATH, "./ancestor::form")
            inp = form.find_element(br.By.CSS_SELECTOR, "input[name='delay_s']")
            inp.send_keys("7")
            n0 = len(dev.commands())
            btn.click()
            got = until(lambda: len(dev.commands()) > n0, 10)
            cmd = dev.commands()[n0] if got else None
            t.check(cmd is not None and cmd[0].endswith("/thermo/t-001/function/invoke") and
                    cmd[1].get("inputs") == {"delay_s": 7},
                    "the invoke reached the MQTT device on its command topic with the inputs",
                    cmd)
            res = until(lambda: (lambda s: s if s and "success" in s else None)(
                form.find_element(br.By.CSS_SELECTOR, ".result").text), 10)
            t.check(res is not None and '"ok": true' in res,
                    "the device's reply (success, outputs ok=true) appears on the page", res)
            inp.clear()
            inp.send_keys("42")
            btn.click()
            res = until(lambda: (lambda s: s if s and "failed" in s else None)(
                form.find_element(br.By.CSS_SELECTOR, ".result").text), 10)
            t.check(res is not None and "overheated" in res,
                    "the device's error reply (failed, its message) appears on the page", res)

        # ---- a property write from the page reaches the device; its reply is shown ----
        wbtn = br.find("#write-mode")
        t.check(wbtn is not None, "an admin token sees the write form of the rw property mode")
        if wbtn is not None:
            form = wbtn.find_element(br.By.XPATH, "./ancestor::form")
            from selenium.webdriver.support.ui import Select
            Select(form.find_element(br.By.CSS_SELECTOR, "select")).select_by_value("comfort")
            n0 = len(dev.commands())
            wbtn.click()
            got = until(lambda: len(dev.commands()) > n0, 10)
            cmd = dev.commands()[n0] if got else None
            t.check(cmd is not None and cmd[0].endswith("/thermo/t-001/properties/write") and
                    cmd[1].get("properties") == {"mode": "comfort"},
                    "the write reached the device with {mode: comfort}", cmd)
            res = until(lambda: (lambda s: s if s and "success" in s else None)(
                form.find_element(br.By.CSS_SELECTOR, ".result").text), 10)
            t.check(res is not None, "the write's success appears on the page", res)
        if SHOTS:
            br.d.set_window_size(1280, 1900)
            time.sleep(0.5)
            br.d.execute_script("window.scrollTo(0, 0)")
            br.d.save_screenshot(os.path.join(SRC, "docs", "console-device.png"))
            br.d.set_window_size(1280, 1000)
        t.eq(severe(br.drain_log()), [], "browser log (admin session): no error")

        # ---- the device list pages through every device ----
        t.eq(gw.metric("iotgw_api_streams"), 1, "the device page holds one stream")
        br.go("#/devices")
        t.check(until(lambda: gw.metric("iotgw_api_streams") == 0, 10),
                "leaving the device page closes its stream", gw.metric("iotgw_api_streams"))
        t.check(br.wait("#dev-rows tr[data-id]", 10) is not None, "the device list shows a page")
        seen, pages, t0 = [], 0, time.monotonic()
        while pages < N_DEVICES // PAGE + 2:
            rows = br.row_ids()
            seen.extend(rows)
            pages += 1
            nxt = br.find("#dev-next")
            if nxt is None or not nxt.is_enabled():
                break
            first = rows[0] if rows else None
            nxt.click()
            if until(lambda: (br.row_ids() or [first])[0] != first, 10) is None:
                break
        t.info("device list: %d pages of %d in %.1f s" % (pages, PAGE, time.monotonic() - t0))
        t.eq(len(seen), N_DEVICES, "the list paged through every device")
        t.check(seen == sorted(g.thermo_ids(N_DEVICES)), "each device once, in id order",
                "%d ids, %d distinct, first %r" % (len(seen), len(set(seen)), seen[:3]))
        t.eq(pages, N_DEVICES // PAGE, "pages of %d" % PAGE)
        prev = br.find("#dev-prev")
        if prev is not None:
            prev.click()
            t.check(until(lambda: br.text("#dev-page") and
                                 br.text("#dev-page").startswith("page %d " % (pages - 1)), 10)
                    is not None, "previous goes back one page", br.text("#dev-page"))
        q = br.find("#dev-q")
        q.send_keys("t-1999")
        t.check(until(lambda: br.row_ids() == ["t-1999"], 10)
                is not None, "the search finds one device")
        t.eq(severe(br.drain_log()), [], "browser log (device list): no error")

        # ---- a read token sees no write controls ----
        br.find("#logout").click()
        t.check(br.wait("#token", 10) is not None, "log out shows the login form")
        t.check(br.login(gwapi.READ_TOKEN, keyboard=True),
                "logs in with the read token from the keyboard alone (focus, Enter)")
        # the keyboard reaches the skip link and the navigation (Tab cycles through the page)
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys
        seen = []
        for _ in range(20):
            # to whatever has the focus, not to an element handle: the overview re-renders every
            # 2 s and a handle taken before it goes stale
            ActionChains(br.d).send_keys(Keys.TAB).perform()
            seen.append(br.d.execute_script(
                "const e = document.activeElement; return e.id || e.getAttribute('href') || e.tagName"))
        t.check("#main" in seen and "#/devices" in seen and "#/products" in seen and
                "logout" in seen, "Tab reaches the skip link, the navigation and Log out", seen)
        t.eq(until(lambda: br.text("#who") or None, 5), "read only", "the header shows the read role")
        br.go("#/devices/t-001")
        t.check(until(lambda: br.text("#prop-temperature") == "23.75", 10) is not None,
                "the read token sees the device's values")
        t.check(until(lambda: br.find(".chart-area svg") is not None, 5) is not None,
                "... and its chart")
        t.eq(br.all("#invoke-reboot"), [], "a read token sees no invoke button")
        t.eq(br.all("#commands form, button[id^='write-']"), [],
             "... and no property write form")
        # phone width: no page scrolls sideways (wide tables scroll inside their box)
        br.d.set_window_size(390, 844)
        wide = []
        for page, ready in (("#/overview", ".cards .stat"), ("#/devices", "#dev-rows tr[data-id]"),
                            ("#/devices/t-001", "#prop-temperature"),
                            ("#/products/thermo", ".model")):
            br.go(page)
            br.wait(ready, 10)
            time.sleep(0.3)
            w = br.d.execute_script("return [document.documentElement.scrollWidth, innerWidth]")
            if w[0] > w[1]:
                wide.append((page, w))
        t.eq(wide, [], "at a phone's width (390 px) no page is wider than the screen")
        br.d.set_window_size(1280, 1000)
        t.eq(br.d.execute_script("return sessionStorage.getItem('iotgw.token')"),
             gwapi.READ_TOKEN, "the token is kept in sessionStorage")
        t.eq(severe(br.drain_log()), [], "browser log (read session): no error")
        t.info("browser log entries: %d in all" % len(br.log))
    except Exception as e:
        t.crash(e)
    finally:
        if br is not None:
            br.quit()
        if dev is not None:
            try:
                dev.client.disconnect()
                dev.client.loop_stop()
            except Exception:
                pass
        gw.stop()
    t.finish()


if __name__ == "__main__":
    main()
