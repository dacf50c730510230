// Drives the live page in Debian's Chromium (headless, through playwright-core) and prints what
// it showed as JSON; tests/test_browser.py runs it and checks the result.
//
//   node test/browser.mjs '{"page": URL, "otherPage": URL, "api": URL, "protocols": [...],
//                           "names": [...], "longName": "..."}'
//
// For each protocol, on `page` (an origin the server allows): the unary reply, the streamed
// greetings in the order they appeared, and the rich error for `longName`. On `otherPage` (an
// origin the server does not list) one unary call: its outcome and what Chromium logged.

import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const WAIT = { timeout: 30000 };

const browser = await chromium.launch({
  executablePath: config.chromium || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: 60000,
});

async function open(base, protocol) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const log = [];
  page.on("console", (message) => log.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => log.push(`pageerror: ${error.message}`));
  page.on("requestfailed", (request) =>
    log.push(`requestfailed: ${request.method()} ${request.url()} ${request.failure()?.errorText}`),
  );
  const url = new URL(base);
  url.searchParams.set("api", config.api);
  await page.goto(url.href, WAIT);
  await page.check(`input[name="transport"][value="${protocol}"]`, WAIT);
  return { context, page, log };
}

// Click `button` and wait until the page says the call is over; the page's state then
async function call(page, button) {
  await page.click(button, WAIT);
  await page.waitForFunction(
    () => ["done", "failed"].includes(document.querySelector("#state").textContent),
    null,
    WAIT,
  );
  return page.evaluate(() => ({
    state: document.querySelector("#state").textContent,
    reply: document.querySelector("#reply").textContent,
    greetings: [...document.querySelectorAll("#greetings li")].map((li) => li.textContent),
    status: document.querySelector("#error .status")?.textContent ?? null,
    violations: [...document.querySelectorAll("#error .violation")].map((li) => ({
      field: li.dataset.field,
      reason: li.dataset.reason,
      text: li.textContent,
    })),
  }));
}

const results = {};
try {
  for (const protocol of config.protocols) {
    const { context, page, log } = await open(config.page, protocol);
    const unary = await call(page, "#say-hello");
    await page.fill("#names", config.names.join(", "));
    const stream = await call(page, "#greet-names");
    await page.fill("#names", [config.names[0], config.longName].join(", "));
    const error = await call(page, "#greet-names");
    await context.close();

    const other = await open(config.otherPage, protocol);
    const refused = await call(other.page, "#say-hello");
    await other.context.close();
    results[protocol] = { unary, stream, error, refused, log, refusedLog: other.log };
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(results));
