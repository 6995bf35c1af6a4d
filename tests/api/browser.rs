//! The journeys through our HTML pages in real headless Chromium (Debian's `chromium` +
//! `chromium-driver`), driven over WebDriver by `fantoccini`: the customer's from the pricing
//! page to a first query in both wizard variants, recovery from a failed setup, the sign-up
//! form's errors and its use without JavaScript, an invited member, and the operator console.
//! Every page is screenshot (under the test's output directory, printed) and checked by
//! axe-core. Skipped (with a message) where Chromium or chromedriver is not installed.
//!
//! A failed expectation saves a screenshot under the system temp dir (its path is printed) and
//! puts the page source in the panic message.

use std::fmt::Display;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{Backend, TEST_PASSWORD, TestApp, spawn_app};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The project's headless flags (plus a fixed window size, so screenshots are comparable).
const CHROME_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--window-size=1280,1024",
];
/// How long the success page may take to show the key once paid.
const PROVISIONING_SECS: u64 = 20;
/// How long a navigation (form post, redirect) may take.
const NAVIGATION_SECS: u64 = 10;

/// A `chromedriver` on a free loopback port, killed with its browsers on drop. Its log and the
/// browser profiles it makes live in a temp dir of its own, removed on drop.
struct Chromedriver {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Chromedriver {
    fn start() -> Chromedriver {
        use std::os::unix::process::CommandExt;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("chromedriver.log");
        let log = std::fs::File::create(&log_path).expect("chromedriver log file");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            // Its own process group: drop kills the browsers it started along with it.
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let mut driver = Chromedriver {
            child,
            port,
            _dir: dir,
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return driver;
            }
            let exited = driver.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                drop(driver);
                panic!(
                    "chromedriver did not listen on {addr} (exit: {exited:?}); its output:\n{log}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The whole group (chromedriver and the Chromium it launched), then reap chromedriver.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session whose failed expectations leave a screenshot and the page source.
struct Browser {
    client: Client,
    base: String,
}

impl Browser {
    async fn connect(driver: &Chromedriver, base: String) -> Browser {
        Self::connect_with(
            driver,
            base,
            json!({ "binary": CHROMIUM, "args": CHROME_ARGS }),
        )
        .await
    }

    /// A browser with JavaScript turned off: what the pages do with plain HTML alone.
    async fn connect_without_javascript(driver: &Chromedriver, base: String) -> Browser {
        let options = json!({
            "binary": CHROMIUM,
            "args": CHROME_ARGS,
            "prefs": { "profile.managed_default_content_settings.javascript": 2 },
        });
        Self::connect_with(driver, base, options).await
    }

    async fn connect_with(
        driver: &Chromedriver,
        base: String,
        options: serde_json::Value,
    ) -> Browser {
        let mut caps = fantoccini::wd::Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| panic!("WebDriver session with {CHROMIUM}: {e}"));
        Browser { client, base }
    }

    /// Saves a screenshot and panics with `what`, the current URL and the page source.
    async fn fail<T>(&self, what: impl Display) -> T {
        let url = match self.client.current_url().await {
            Ok(u) => u.to_string(),
            Err(e) => format!("(unknown: {e})"),
        };
        let shot = match self.client.screenshot().await {
            Ok(png) => {
                let path = std::env::temp_dir().join(format!(
                    "onboard-browser-{}.png",
                    ulid::Ulid::new().to_string().to_lowercase()
                ));
                match std::fs::write(&path, png) {
                    Ok(()) => {
                        eprintln!("browser test screenshot: {}", path.display());
                        path.display().to_string()
                    }
                    Err(e) => format!("(not saved to {}: {e})", path.display()),
                }
            }
            Err(e) => format!("(not taken: {e})"),
        };
        let source = self
            .client
            .source()
            .await
            .unwrap_or_else(|e| format!("(unavailable: {e})"));
        panic!("browser test: {what}\n  at: {url}\n  screenshot: {shot}\n  page source:\n{source}")
    }

    /// The value of a WebDriver command, or a failure (with screenshot) naming `what`.
    async fn ok<T>(&self, result: Result<T, CmdError>, what: impl Display) -> T {
        match result {
            Ok(v) => v,
            Err(e) => self.fail(format!("{what}: {e}")).await,
        }
    }

    /// Fails (with screenshot) unless `cond` holds.
    async fn check(&self, cond: bool, what: impl Display) {
        if !cond {
            self.fail(what).await
        }
    }

    /// Polls `probe` every 100 ms until it yields a value, failing after `secs`. WebDriver
    /// errors while polling (a page mid-navigation, an element not there yet) mean "not yet".
    async fn wait_until<T, F, Fut>(&self, what: &str, secs: u64, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, CmdError>>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last_error = None;
        loop {
            match probe().await {
                Ok(Some(v)) => return v,
                Ok(None) => {}
                Err(e) => last_error = Some(e),
            }
            if Instant::now() >= deadline {
                let last = last_error.map(|e| format!(" (last error: {e})"));
                return self
                    .fail(format!(
                        "timed out after {secs} s waiting for {what}{}",
                        last.unwrap_or_default()
                    ))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn goto(&self, path_or_url: &str) {
        let url = if path_or_url.starts_with('/') {
            format!("{}{path_or_url}", self.base)
        } else {
            path_or_url.to_string()
        };
        let r = self.client.goto(&url).await;
        self.ok(r, format_args!("open {url}")).await
    }

    /// Waits until the browser is on `path` (of our server) and returns the full URL.
    async fn wait_for_path(&self, path: &str) -> url::Url {
        let c = &self.client;
        let base = &self.base;
        self.wait_until(
            &format!("the browser to be on {path}"),
            NAVIGATION_SECS,
            move || async move {
                let url = c.current_url().await?;
                let ours = url.as_str().starts_with(base.as_str());
                Ok((ours && url.path() == path).then_some(url))
            },
        )
        .await
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let r = self.client.find(Locator::Css(css)).await;
        self.ok(r, format_args!("find `{css}`")).await
    }

    /// The rendered (visible) text of the element `css` finds.
    async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        let r = el.text().await;
        self.ok(r, format_args!("text of `{css}`")).await
    }

    /// The definition (`<dd>`) that follows the term `term` (`<dt>`).
    async fn definition(&self, term: &str) -> String {
        let xpath = format!("//dt[normalize-space(.)='{term}']/following-sibling::dd[1]");
        let r = self.client.find(Locator::XPath(&xpath)).await;
        let el = self.ok(r, format_args!("find the `{term}` entry")).await;
        let r = el.text().await;
        self.ok(r, format_args!("text of the `{term}` entry")).await
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        let r = el.click().await;
        self.ok(r, format_args!("click `{css}`")).await
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        let r = el.clear().await;
        self.ok(r, format_args!("clear `{css}`")).await;
        let r = el.send_keys(text).await;
        self.ok(r, format_args!("type into `{css}`")).await
    }

    /// Fills in the sign-in form on `/login` and submits it with its button.
    async fn sign_in(&self, email: &str, password: &str) {
        self.type_into("#email", email).await;
        self.type_into("#password", password).await;
        self.click("form[action='/login'] button[type='submit']")
            .await;
    }
}

/// What the success page shows once its poll has seen the tenant `active`.
struct SuccessView {
    key_shown: bool,
    key: String,
    steps: Vec<(String, String)>,
}

/// Waits (bounded) until the success page says the workspace is ready, then reads it.
async fn ready_success_page(b: &Browser) -> SuccessView {
    let c = &b.client;
    b.wait_until(
        "the success page to report the workspace ready",
        PROVISIONING_SECS,
        move || async move {
            let headline = c.find(Locator::Id("headline")).await?.text().await?;
            if headline != "Your workspace is ready." {
                return Ok(None);
            }
            // The poll that set the headline has also filled in the steps and (once) the key.
            let mut steps = Vec::new();
            for li in c.find_all(Locator::Css("#steps li")).await? {
                let spans = li.find_all(Locator::Css("span")).await?;
                let mut texts = Vec::new();
                for s in spans {
                    texts.push(s.text().await?);
                }
                if let [name, state] = texts.as_slice() {
                    steps.push((name.clone(), state.clone()));
                }
            }
            let key_shown = c.find(Locator::Id("key")).await?.is_displayed().await?;
            let key = c
                .find(Locator::Id("keyvalue"))
                .await?
                .prop("textContent")
                .await?
                .unwrap_or_default();
            Ok(Some(SuccessView {
                key_shown,
                key: key.trim().to_string(),
                steps,
            }))
        },
    )
    .await
}

fn installed(path: &str) -> bool {
    Path::new(path).is_file()
}

/// Where the customer journeys save a screenshot of each page (printed at the end).
fn screenshot_dir(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// axe-core's script, or empty (saying so) when `npm ci --prefix tests/browser` has not run.
fn axe_script(test: &str) -> String {
    let axe = std::fs::read_to_string(AXE).unwrap_or_default();
    if axe.is_empty() {
        eprintln!(
            "NOTE {test}: no accessibility checks, {AXE} is missing (npm ci --prefix tests/browser)"
        );
    }
    axe
}

fn browsers_missing(test: &str) -> bool {
    let missing = !installed(CHROMIUM) || !installed(CHROMEDRIVER);
    if missing {
        eprintln!(
            "SKIPPED {test}: chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
        );
    }
    missing
}

impl Browser {
    /// Screenshot (saved as `dir/name.png`), then axe-core unless it is missing, then no
    /// sideways scrolling.
    async fn look(&self, dir: &Path, axe: &str, name: &str) {
        self.shoot(dir, name).await;
        if !axe.is_empty() {
            self.accessible(axe, name).await;
        }
        let wide = self.too_wide().await;
        self.check(
            wide.is_empty(),
            format!("{name} scrolls sideways: {wide:?}"),
        )
        .await;
    }

    /// Makes the window 360 px wide (a phone's) and checks that none of `paths` scrolls
    /// sideways there.
    async fn fits_a_phone(&self, paths: &[&str]) {
        let r = self.client.set_window_size(360, 780).await;
        self.ok(r, "resize the window to 360 px").await;
        for path in paths {
            self.goto(path).await;
            let wide = self.too_wide().await;
            self.check(
                wide.is_empty(),
                format!("{path} fits 360 px; wider: {wide:?}"),
            )
            .await;
        }
    }

    /// The number of elements `css` finds.
    async fn count(&self, css: &str) -> usize {
        let r = self.client.find_all(Locator::Css(css)).await;
        self.ok(r, format_args!("find all `{css}`")).await.len()
    }

    /// The wizard's steps as listed: (title, state).
    async fn wizard_states(&self) -> Vec<String> {
        let r = self
            .client
            .find_all(Locator::Css("ol.steps li span:last-child"))
            .await;
        let mut out = Vec::new();
        for el in self.ok(r, "the wizard's steps").await {
            let t = el.text().await;
            out.push(self.ok(t, "a step's state").await);
        }
        out
    }

    /// Fills in the sign-up form on `/` and sends it.
    async fn sign_up(&self, email: &str, company: &str, password: &str, plan: &str) {
        self.type_into("#email", email).await;
        self.type_into("#company_name", company).await;
        self.type_into("#password", password).await;
        let r = self.find("#plan").await.select_by_value(plan).await;
        self.ok(r, format_args!("choose the {plan} plan")).await;
        self.click("#signup-form button[type='submit']").await;
    }

    /// Runs a query from the page's query box and returns the ranked results' titles.
    async fn query(&self, text: &str) -> Vec<String> {
        self.type_into("#query", text).await;
        self.click("form[role='search'] button[type='submit']")
            .await;
        self.text_when("#results-heading").await;
        let r = self
            .client
            .find_all(Locator::Css("ol.results li strong"))
            .await;
        let mut titles = Vec::new();
        for el in self.ok(r, "the results").await {
            let t = el.text().await;
            titles.push(self.ok(t, "a result's title").await);
        }
        titles
    }
}

/// The customer's journey in a browser, in the wizard's `variant` (`quick`: every signup gets
/// it; `guided`: none does): `/` → sign-up form → dev checkout → progress → the key, copied →
/// sign-in from the link in the mailbox → the wizard (the document step skipped to the sample
/// data when `skip`, else a document uploaded) to its end → the workspace: a document dropped
/// in, a query with results → sign out. Each page is screenshot and checked by axe-core.
async fn customer_journey(variant: &str, skip: bool) {
    let test = format!(
        "customer journey ({variant}{})",
        if skip { ", skip" } else { "" }
    );
    if browsers_missing(&test) {
        return;
    }
    let axe = axe_script(&test);
    let shots = screenshot_dir(&format!(
        "journey-{variant}{}",
        if skip { "-skip" } else { "" }
    ));
    let started = Instant::now();
    let split = if variant == "quick" { "100" } else { "0" };
    let app: TestApp =
        crate::helpers::spawn_app_with(Backend::Sqlite, &[("WIZARD_SPLIT", split)]).await;
    assert!(app.addr.ip().is_loopback(), "the server is on loopback");
    let email = format!(
        "browser-{}@example.com",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let driver = Chromedriver::start();
    let b = Browser::connect(&driver, app.url("")).await;

    // The front page: the plans from the plan table, then the sign-up form.
    b.goto("/").await;
    let plans = b.count(".plans > li").await;
    b.check(plans == 3, format!("three plans are shown: {plans}"))
        .await;
    let boxed = b
        .find("input[name='marketing_opt_in']")
        .await
        .prop("checked")
        .await;
    let boxed = b.ok(boxed, "the consent box").await;
    b.check(
        boxed.as_deref() == Some("false"),
        format!("the consent box starts unticked: {boxed:?}"),
    )
    .await;
    b.look(&shots, &axe, "01-pricing").await;
    b.sign_up(&email, "Acme", TEST_PASSWORD, "pro").await;

    // The dev checkout: company, plan and price, then Pay.
    b.wait_until("the dev checkout", NAVIGATION_SECS, || async {
        Ok(b.client
            .current_url()
            .await?
            .path()
            .starts_with("/dev/checkout/")
            .then_some(()))
    })
    .await;
    let plan = b.definition("Plan").await;
    b.check(plan == "pro", format!("checkout shows the plan: {plan:?}"))
        .await;
    let pay = b.text("#pay").await;
    b.check(
        pay == "Pay $199",
        format!("the Pay button names the price: {pay:?}"),
    )
    .await;
    b.look(&shots, &axe, "02-checkout").await;
    b.click("#pay").await;

    // The success page: live progress, then the key once, with a copy button.
    b.wait_for_path("/onboarding/success").await;
    let thanks = b.text("h1").await;
    b.check(
        thanks == "Thanks, Acme!",
        format!("the page thanks the company: {thanks:?}"),
    )
    .await;
    let first = ready_success_page(&b).await;
    b.check(
        first.steps.len() == 4
            && first
                .steps
                .iter()
                .all(|(_, s)| s == "done" || s == "skipped"),
        format!("every step finished: {:?}", first.steps),
    )
    .await;
    b.check(
        first.key_shown && !first.key.is_empty(),
        "the key is shown once ready",
    )
    .await;
    let principal = app
        .store
        .authenticate_api_key(&app.state.signer, &first.key)
        .await;
    b.check(
        principal.is_ok(),
        format!("the key on the page works: {principal:?}"),
    )
    .await;
    let bar = b.find("#bar").await.attr("value").await;
    let bar = b.ok(bar, "the progress bar").await;
    b.check(
        bar.as_deref() == Some("4"),
        format!("the bar is full: {bar:?}"),
    )
    .await;
    b.click("#copy").await;
    let copied = b.text_when("#copied:not(:empty)").await;
    b.check(
        copied.contains("clipboard") || copied.contains("Ctrl+C"),
        format!("copying the key is confirmed: {copied:?}"),
    )
    .await;
    let next = b.text("#next a").await;
    b.check(
        next == "Open your workspace",
        format!("a clear next step: {next:?}"),
    )
    .await;
    b.look(&shots, &axe, "03-success").await;
    let r = b.client.refresh().await;
    b.ok(r, "reload the success page").await;
    let again = ready_success_page(&b).await;
    b.check(
        !again.key_shown && again.key.is_empty(),
        "a reload no longer shows the key",
    )
    .await;

    // The welcome email in the dev mailbox; its sign-in link leads into the wizard.
    b.goto("/dev/mailbox").await;
    b.click("table a").await;
    let text = b.text_when("pre").await;
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/login/magic?token="))
        .map(str::to_string);
    let Some(link) = link else {
        return b
            .fail(format!("no sign-in link in the welcome email: {text}"))
            .await;
    };
    b.goto(&link).await;
    b.look(&shots, &axe, "04-magic-link").await;
    b.click("form[action='/login/magic'] button[type='submit']")
        .await;
    b.wait_for_path("/setup").await;
    let states = b.wizard_states().await;
    let steps = if variant == "quick" { 2 } else { 4 };
    b.check(
        states.len() == steps && states.iter().all(|s| s == "pending"),
        format!("the {variant} wizard starts with {steps} pending steps: {states:?}"),
    )
    .await;
    b.look(&shots, &axe, "05-setup-first-step").await;

    // Step 1: skip to the sample data, or upload a document of our own.
    if skip {
        b.click("#skip").await;
        b.wait_for_path("/setup").await;
        let states = b.wizard_states().await;
        b.check(
            states[0] == "skipped",
            format!("step 1 is skipped: {states:?}"),
        )
        .await;
    } else {
        b.type_into("#title", "Refund policy").await;
        b.type_into(
            "#content",
            "Refunds are paid back within 14 days of a written request.",
        )
        .await;
        b.click("form.upload button[type='submit']").await;
        b.wait_for_path("/setup").await;
        let states = b.wizard_states().await;
        b.check(states[0] == "done", format!("step 1 is done: {states:?}"))
            .await;
    }
    // Progress is saved: a fresh visit resumes at the next step.
    b.goto("/setup").await;
    let current = b.text("#step-heading").await;
    b.check(
        current.starts_with("Step 2"),
        format!("the wizard resumes at step 2: {current:?}"),
    )
    .await;

    // Step 2: a real query against the workspace, with ranked results.
    let titles = b
        .query(if skip { "getting started" } else { "refund" })
        .await;
    b.check(!titles.is_empty(), "the query found passages")
        .await;
    if !skip {
        b.check(
            titles[0].contains("Refund policy"),
            format!("our own document ranks first: {titles:?}"),
        )
        .await;
    }
    b.look(&shots, &axe, "06-setup-query").await;

    if variant == "guided" {
        // Step 3: an integration key, shown once; step 4: a first call with it.
        b.goto("/setup").await;
        b.type_into("#key-name", "Integration").await;
        b.click("form[action='/setup/keys'] button[type='submit']")
            .await;
        let secret = b.text_when("#new-secret").await;
        b.look(&shots, &axe, "07-setup-key").await;
        b.goto("/setup").await;
        let current = b.text("#step-heading").await;
        b.check(
            current.starts_with("Step 4"),
            format!("on to the first call: {current:?}"),
        )
        .await;
        app.query_ok(secret.trim(), "getting started", 3).await;
        b.goto("/setup").await;
    } else {
        b.goto("/setup").await;
    }
    let done = b.text_when("#finished-heading").await;
    b.check(
        done == "You are all set",
        format!("the wizard is finished: {done:?}"),
    )
    .await;
    let states = b.wizard_states().await;
    b.check(
        states.iter().all(|s| s == "done" || s == "skipped"),
        format!("every step done or skipped: {states:?}"),
    )
    .await;
    b.look(&shots, &axe, "08-setup-done").await;

    // The workspace: drop a file in (the file input the drop zone holds), query it.
    b.click("#finished-heading + p + p a").await;
    b.wait_for_path("/app").await;
    let file = tempfile::Builder::new()
        .suffix(".md")
        .tempfile()
        .expect("temp file");
    std::fs::write(
        file.path(),
        "# Shipping times\n\nOrders ship within two business days from our warehouse.",
    )
    .expect("write the file");
    let r = b
        .find("#file")
        .await
        .send_keys(&file.path().display().to_string())
        .await;
    b.ok(r, "choose a file for the drop zone").await;
    let notice = b.text_when(".notice[role='status']").await;
    b.check(
        notice.starts_with("Document added"),
        format!("the file was added: {notice:?}"),
    )
    .await;
    let listed = b.text("#documents table").await;
    b.check(
        listed.contains("Shipping times"),
        format!("the document is listed: {listed}"),
    )
    .await;
    let titles = b.query("when do orders ship").await;
    b.check(
        titles.first().is_some_and(|t| t.contains("Shipping times")),
        format!("the dropped file answers the query: {titles:?}"),
    )
    .await;
    b.look(&shots, &axe, "09-workspace").await;
    b.goto("/account").await;
    b.look(&shots, &axe, "10-account").await;
    b.goto("/app/members").await;
    b.look(&shots, &axe, "11-team").await;

    // A phone's width: every customer page still fits, nothing scrolls sideways.
    b.fits_a_phone(&["/", "/setup", "/app", "/account", "/app/members", "/docs"])
        .await;
    b.goto("/app").await;
    b.shoot(&shots, "13-workspace-360").await;
    let r = b.client.set_window_size(1280, 1024).await;
    b.ok(r, "restore the window").await;

    // Signing out ends on /login, and the workspace is then closed.
    b.click("form[action='/logout'] button[type='submit']")
        .await;
    b.wait_for_path("/login").await;
    b.look(&shots, &axe, "12-login").await;
    b.goto("/app").await;
    b.wait_for_path("/login").await;
    // A returning customer whose setup is finished signs in straight to the workspace.
    b.sign_in(&email, TEST_PASSWORD).await;
    b.wait_for_path("/app").await;

    let r = b.client.close().await;
    if let Err(e) = r {
        eprintln!("closing the WebDriver session: {e}");
    }
    drop(driver);
    eprintln!(
        "{test} took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_variant_customer_skips_to_the_sample_data_and_reaches_a_first_query() {
    customer_journey("quick", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guided_variant_customer_uploads_creates_a_key_and_makes_a_first_call() {
    customer_journey("guided", false).await;
}

/// A provisioning that failed (the vector store was down) is retried from the success page's
/// button and finishes, with the key shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_setup_is_retried_from_the_success_page() {
    if browsers_missing("recovery browser test") {
        return;
    }
    let axe = axe_script("recovery browser test");
    let shots = screenshot_dir("recovery");
    let app =
        crate::helpers::spawn_app_with(Backend::Sqlite, &[("MAX_PROVISIONING_RETRIES", "1")]).await;
    app.state.vectors.simulate_outage(true);
    let (tenant, session) = app.checkout("recovery@example.com", "starter").await;
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    app.wait_for_status(&tenant, "failed", 30).await;

    let driver = Chromedriver::start();
    let b = Browser::connect(&driver, app.url("")).await;
    b.goto(&format!("/onboarding/success?session_id={session}"))
        .await;
    let reason = b.text_when("#reason").await;
    b.check(
        reason.starts_with("Setup failed"),
        format!("the failure is explained: {reason:?}"),
    )
    .await;
    b.look(&shots, &axe, "failed").await;
    app.state.vectors.simulate_outage(false);
    b.click("#retry").await;
    let ready = ready_success_page(&b).await;
    b.check(ready.key_shown, "after the retry the key is shown")
        .await;
    b.look(&shots, &axe, "recovered").await;
    app.wait_for_status(&tenant, "active", 10).await;
    let _ = b.client.close().await;
}

/// The sign-up form shows a refused field next to the field, announced; and the form works
/// with JavaScript turned off (a plain post, a 303 to the checkout). The cancel page offers
/// the way back to that checkout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signup_form_explains_a_wrong_field_inline_and_works_without_javascript() {
    if browsers_missing("forms browser test") {
        return;
    }
    let axe = axe_script("forms browser test");
    let shots = screenshot_dir("forms");
    let app: TestApp = spawn_app(Backend::Sqlite).await;
    let driver = Chromedriver::start();

    let b = Browser::connect(&driver, app.url("")).await;
    b.goto("/").await;
    b.sign_up("not-an-email", "Acme", TEST_PASSWORD, "starter")
        .await;
    let error = b.text_when("#email-error").await;
    b.check(
        error.contains("@"),
        format!("the email's error is by the field: {error:?}"),
    )
    .await;
    let invalid = b.find("#email").await.attr("aria-invalid").await;
    let invalid = b.ok(invalid, "aria-invalid").await;
    b.check(
        invalid.as_deref() == Some("true"),
        "the field is marked invalid",
    )
    .await;
    let kept = b.find("#company_name").await.prop("value").await;
    let kept = b.ok(kept, "the company name").await;
    b.check(
        kept.as_deref() == Some("Acme"),
        format!("what was typed is kept: {kept:?}"),
    )
    .await;
    b.look(&shots, &axe, "signup-error").await;
    let _ = b.client.close().await;

    let plain = Browser::connect_without_javascript(&driver, app.url("")).await;
    plain.goto("/").await;
    plain
        .sign_up(
            "nojs@example.com",
            "No Script Ltd",
            TEST_PASSWORD,
            "starter",
        )
        .await;
    plain
        .wait_until("the dev checkout", NAVIGATION_SECS, || async {
            Ok(plain
                .client
                .current_url()
                .await?
                .path()
                .starts_with("/dev/checkout/")
                .then_some(()))
        })
        .await;
    let company = plain.text("h1").await;
    plain
        .check(
            company == "No Script Ltd",
            format!("signed up without JavaScript: {company:?}"),
        )
        .await;
    // Stripe's back link: the cancel page, with the way back to this checkout.
    plain.click("a[href='/onboarding/cancel']").await;
    plain.wait_for_path("/onboarding/cancel").await;
    // (No axe-core here: it is a script, and this browser runs none; the journeys check it.)
    plain.shoot(&shots, "cancel").await;
    plain.click("a.button").await;
    plain
        .wait_until("the checkout again", NAVIGATION_SECS, || async {
            Ok(plain
                .client
                .current_url()
                .await?
                .path()
                .starts_with("/dev/checkout/")
                .then_some(()))
        })
        .await;
    let _ = plain.client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_member_accepts_in_the_browser_and_sees_the_team() {
    let test = "an invited member";
    if browsers_missing(test) {
        return;
    }
    let axe = axe_script(test);
    let shots = screenshot_dir("invited");
    let app: TestApp = spawn_app(Backend::Sqlite).await;
    let owner = app.active_tenant("team-owner@example.com", "starter").await;

    // The owner signs in and invites a teammate from the members page.
    let driver = Chromedriver::start();
    let b = Browser::connect(&driver, app.url("")).await;
    b.goto("/login").await;
    b.sign_in(&owner.email, &owner.password).await;
    b.wait_until("signed in", NAVIGATION_SECS, || async {
        let url = b.client.current_url().await?;
        Ok((url.path() != "/login").then_some(()))
    })
    .await;
    b.goto("/app/members").await;
    let owner_row = b
        .text("section[aria-labelledby='members-heading'] tbody")
        .await;
    b.check(
        owner_row.contains("The only owner") && b.count("form[action$='/remove']").await == 0,
        format!("the only owner is offered no removal or demotion: {owner_row:?}"),
    )
    .await;
    b.look(&shots, &axe, "01-members-as-owner").await;
    b.type_into("#invite-email", "grace@example.com").await;
    let r = b.find("#invite-role").await.select_by_value("member").await;
    b.ok(r, "choose the member role").await;
    b.click("form[action='/app/members/invite'] button[type='submit']")
        .await;
    let pending = b
        .text_when("section[aria-labelledby='invitations-heading'] tbody")
        .await;
    b.check(
        pending.contains("grace@example.com"),
        format!("the invitation is pending: {pending:?}"),
    )
    .await;
    b.look(&shots, &axe, "02-invited").await;

    // The emailed link, opened in the same browser: the page says whose session it holds.
    let link = crate::teams::invitation_link(&app, &owner.tenant_id, "grace@example.com", 0).await;
    b.goto(&link).await;
    let title = b.text("h1").await;
    b.check(
        title == "Join Acme",
        format!("the page names the company: {title:?}"),
    )
    .await;
    let notice = b.text("p.notice").await;
    b.check(
        notice.contains("signed in as team-owner@example.com"),
        format!("the page says whose session this browser holds: {notice:?}"),
    )
    .await;
    b.look(&shots, &axe, "03-accept").await;
    // A too-short password is refused on the page, with the name kept and the link still good.
    b.type_into("#name", "Grace Hopper").await;
    b.type_into("#password", "short").await;
    let r = b
        .client
        .execute(
            "document.getElementById('password').removeAttribute('minlength'); return true;",
            vec![],
        )
        .await;
    b.ok(r, "let the browser submit a short password").await;
    b.click("form[action='/invitations/accept'] button[type='submit']")
        .await;
    let error = b.text_when("#accept-error").await;
    b.check(
        error.contains("password"),
        format!("the error names the password: {error:?}"),
    )
    .await;
    let kept = b.find("#name").await.prop("value").await;
    let kept = b.ok(kept, "the name field's value").await;
    b.check(
        kept.as_deref() == Some("Grace Hopper"),
        format!("the name is kept: {kept:?}"),
    )
    .await;
    b.look(&shots, &axe, "04-accept-refused").await;
    b.type_into("#password", MEMBER_PASSWORD_BROWSER).await;
    b.click("form[action='/invitations/accept'] button[type='submit']")
        .await;

    // Now the member: the team, without the owner's forms.
    b.wait_for_path("/app/members").await;
    let intro = b.text("main p.muted").await;
    b.check(
        intro.contains("grace@example.com (member)"),
        format!("signed in as the new member: {intro:?}"),
    )
    .await;
    let rows = b
        .text("section[aria-labelledby='members-heading'] tbody")
        .await;
    b.check(
        rows.contains("Grace Hopper (you)") && rows.contains("team-owner@example.com"),
        format!("the team lists both: {rows:?}"),
    )
    .await;
    b.check(
        b.count("form[action='/app/members/invite']").await == 0,
        "a member gets no invite form",
    )
    .await;
    b.look(&shots, &axe, "05-members-as-member").await;

    // The member uses the workspace: the sample data answers a query; keys are not theirs.
    b.goto("/app").await;
    let titles = b.query("how do I get started").await;
    b.check(
        !titles.is_empty(),
        format!("the member's query finds the sample data: {titles:?}"),
    )
    .await;
    b.check(
        b.count("form[action='/app/keys']").await == 0,
        "a member gets no key form",
    )
    .await;
    b.look(&shots, &axe, "06-workspace-as-member").await;
    b.fits_a_phone(&["/app/members", "/app"]).await;
    eprintln!("screenshots: {}", shots.display());
    let r = b.client.clone().close().await;
    b.ok(r, "close the browser").await;
}

const MEMBER_PASSWORD_BROWSER: &str = "GraceHopper1906!";
/// axe-core as `.ci/run` installs it (`npm ci --prefix tests/browser`).
const AXE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/browser/node_modules/axe-core/axe.min.js"
);
const OPERATOR_TOKEN: &str = "browser-operator-token-0123456789";

impl Browser {
    /// Runs axe-core on the page and fails on any violation of serious or critical impact
    /// (naming each rule and the elements it found).
    async fn accessible(&self, axe: &str, page: &str) {
        let r = self
            .client
            .execute(&format!("{axe}\n;return typeof axe;"), vec![])
            .await;
        let loaded = self
            .ok(r, format_args!("inject axe-core into {page}"))
            .await;
        self.check(
            loaded == json!("object"),
            format!("axe-core did not load into {page}: {loaded}"),
        )
        .await;
        let r = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then(r => done(r.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at '
                       + v.nodes.map(n => n.target.join(' ')).join(', '))))
                   .catch(e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await;
        let found = self.ok(r, format_args!("run axe-core on {page}")).await;
        let found: Vec<String> = serde_json::from_value(found).unwrap_or_default();
        self.check(
            found.is_empty(),
            format!(
                "{page}: accessibility violations:\n  {}",
                found.join("\n  ")
            ),
        )
        .await;
    }

    /// The text of the element `css` finds, once the page (after a navigation) has one.
    async fn text_when(&self, css: &str) -> String {
        let c = &self.client;
        self.wait_until(&format!("`{css}`"), NAVIGATION_SECS, move || async move {
            match c.find(Locator::Css(css)).await {
                Ok(el) => Ok(Some(el.text().await?)),
                Err(e) if e.is_no_such_element() => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Saves a screenshot of the page as `dir/name.png`.
    async fn shoot(&self, dir: &Path, name: &str) -> std::path::PathBuf {
        let r = self.client.screenshot().await;
        let png = self.ok(r, format_args!("screenshot of {name}")).await;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// What makes the page wider than its window (sideways scrolling): the outermost elements
    /// that stick out, as `tag.class`; empty when it fits.
    async fn too_wide(&self) -> Vec<String> {
        let r = self
            .client
            .execute(
                "if (document.documentElement.scrollWidth <= window.innerWidth) return [];
                 const out = [];
                 for (const el of document.body.querySelectorAll('*')) {
                   if (el.getBoundingClientRect().right <= window.innerWidth + 1) continue;
                   if (out.some(o => o.el.contains(el))) continue;
                   out.push({ el, name: el.tagName.toLowerCase() + '.' + el.className });
                 }
                 return out.map(o => o.name);",
                vec![],
            )
            .await;
        let found = self.ok(r, "measure the page's width").await;
        serde_json::from_value(found).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_signs_in_finds_a_new_tenant_sees_the_funnel_and_retries_a_failed_one() {
    if !installed(CHROMIUM) || !installed(CHROMEDRIVER) {
        eprintln!(
            "SKIPPED operator browser test: chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let axe = std::fs::read_to_string(AXE).unwrap_or_default();
    if axe.is_empty() {
        eprintln!(
            "NOTE operator browser test: no accessibility checks, {AXE} is missing (npm ci --prefix tests/browser)"
        );
    }
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let app = crate::helpers::spawn_app_with(
        Backend::Sqlite,
        &[
            ("ADMIN_TOKEN", OPERATOR_TOKEN),
            ("MAX_PROVISIONING_RETRIES", "1"),
        ],
    )
    .await;
    let fresh = ulid::Ulid::new().to_string().to_lowercase();
    let active = app
        .active_tenant(&format!("new-{fresh}@example.com"), "pro")
        .await;
    // It goes all the way: signs in, uploads a document and runs a first query.
    crate::login::signed_in(&app, &active).await;
    app.upload(&active.api_key, "Handbook", "How we onboard new customers.")
        .await;
    app.query_ok(&active.api_key, "how do we onboard", 3).await;
    app.state.vectors.simulate_outage(true);
    let (failed, session) = app
        .checkout(&format!("failed-{fresh}@example.com"), "starter")
        .await;
    assert_eq!(app.dev_checkout(&session, "pay").await.status(), 303);
    app.wait_for_status(&failed, "failed", 30).await;
    app.state.vectors.simulate_outage(false);

    let driver = Chromedriver::start();
    let b = Browser::connect(&driver, app.url("")).await;
    let look = |page: &'static str| {
        let (b, axe, shots) = (&b, &axe, &shots);
        async move {
            let path = b.shoot(shots, page).await;
            if !axe.is_empty() {
                b.accessible(axe, page).await;
            }
            path
        }
    };

    // Signing in: the console sends a visitor to its sign-in form, then to the page asked for.
    b.goto("/admin/activation").await;
    b.wait_for_path("/admin/login").await;
    look("login").await;
    b.type_into("#token", "not-the-token").await;
    b.click("form[action='/admin/login'] button[type='submit']")
        .await;
    let error = b.text_when("#login-error").await;
    b.check(
        error.contains("not the operator token"),
        format!("a wrong token is explained: {error:?}"),
    )
    .await;
    b.type_into("#token", OPERATOR_TOKEN).await;
    b.click("form[action='/admin/login'] button[type='submit']")
        .await;
    b.wait_for_path("/admin/activation").await;

    // The funnel shows both signups: the failed one dropping before it was provisioned, the
    // other one all the way to its first query.
    let funnel = b.text("#funnel-chart").await;
    b.check(
        funnel.contains("Signed up · 2")
            && funnel.contains("Provisioned · 1")
            && funnel.contains("First query · 1"),
        format!("the funnel chart counts the new tenants: {funnel:?}"),
    )
    .await;
    let funnel_shot = look("activation").await;
    if std::env::var_os("ONBOARD_UPDATE_DOCS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/funnel.png");
        std::fs::copy(&funnel_shot, &docs).expect("copy the funnel screenshot to docs/");
    }

    let r = b
        .client
        .execute(
            "document.getElementById('ab-heading').scrollIntoView();",
            vec![],
        )
        .await;
    b.ok(r, "scroll to the A/B test").await;
    b.shoot(&shots, "activation-lower").await;

    // Finding the new tenant by its email.
    b.goto("/admin").await;
    look("overview").await;
    b.click("a[href='/admin/tenants']").await;
    b.wait_for_path("/admin/tenants").await;
    b.type_into("#q", &format!("new-{fresh}")).await;
    b.click("form[role='search'] button[type='submit']").await;
    let c = &b.client;
    b.wait_until(
        "the search to find the one tenant",
        NAVIGATION_SECS,
        move || async move {
            let found = c.find(Locator::Css("main p.muted")).await?.text().await?;
            Ok((found == "1 tenant found, newest first.").then_some(()))
        },
    )
    .await;
    b.click(&format!("a[href='/admin/tenants/{}']", active.tenant_id))
        .await;
    b.wait_for_path(&format!("/admin/tenants/{}", active.tenant_id))
        .await;
    let heading = b.text("h1").await;
    b.check(
        heading.starts_with("Acme") && heading.ends_with("active"),
        format!("the tenant's page: {heading:?}"),
    )
    .await;
    look("tenant").await;

    // The failed one is stuck; retrying it from its page.
    b.goto("/admin/at-risk").await;
    look("at-risk").await;
    b.goto("/admin/tenants?status=failed").await;
    look("tenants").await;
    b.click(&format!("a[href='/admin/tenants/{failed}']")).await;
    b.wait_for_path(&format!("/admin/tenants/{failed}")).await;
    b.click("#retry").await;
    let notice = b.text_when(".notice").await;
    b.check(
        notice.starts_with("Provisioning restarted"),
        format!("the retry is announced: {notice:?}"),
    )
    .await;
    app.wait_for_status(&failed, "active", 30).await;
    let r = b.client.refresh().await;
    b.ok(r, "reload the tenant's page").await;
    let heading = b.text("h1").await;
    b.check(
        heading.ends_with("active"),
        format!("the retried tenant is active: {heading:?}"),
    )
    .await;

    for (path, name) in [
        ("/admin/alerts", "alerts"),
        ("/admin/jobs", "jobs"),
        ("/admin/audit", "audit"),
    ] {
        b.goto(path).await;
        b.wait_for_path(path).await;
        look(name).await;
    }

    // A phone's width: every page still fits, nothing scrolls sideways.
    b.fits_a_phone(&[
        "/admin",
        "/admin/tenants",
        &format!("/admin/tenants/{failed}"),
        "/admin/activation",
        "/admin/at-risk",
        "/admin/alerts",
        "/admin/jobs",
        "/admin/audit",
    ])
    .await;
    b.goto("/admin/activation").await;
    b.shoot(&shots, "activation-360").await;

    eprintln!("console screenshots: {}", shots.display());
    let r = b.client.close().await;
    if let Err(e) = r {
        eprintln!("closing the WebDriver session: {e}");
    }
    drop(driver);
}
