// The web page in a real browser: headless Chromium driven by playwright-core.
// Run by crates/kiln-cli/tests/serve.rs against a running `serve`:
//   KILN_E2E_MODULES=.tools/e2e/node_modules node tests/e2e/page.mjs BASE_URL TOKEN
// Prints what a user would see, as JSON, for the test to check.
import { createRequire } from "node:module";

const [base, token] = process.argv.slice(2);
const require = createRequire(`${process.env.KILN_E2E_MODULES}/`);
const { chromium } = require("playwright-core");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
try {
  const page = await browser.newPage();
  await page.goto(base);

  // Without the token the API refuses, and the page says so.
  await page.fill("#text", "I am still waiting on my card?");
  await page.click("#predict");
  await page.waitForSelector("#single .error", { timeout: 15000 });
  const refused = await page.textContent("#single .error");

  // With it: one text, its label and a bar per class.
  await page.fill("#token", token);
  await page.dispatchEvent("#token", "change");
  await page.click("#predict");
  await page.waitForSelector("#single .label", { timeout: 15000 });
  const label = await page.textContent("#single .label");
  const bars = await page.$$eval("#single .row", (rows) =>
    rows.map((row) => ({ label: row.children[0].textContent, width: row.querySelector(".fill").style.width })));
  await page.waitForFunction(() => document.querySelector("#model").textContent.includes("version"));
  const model = await page.textContent("#model");

  // Many lines at once.
  await page.fill("#lines", "how do i top up\n\nwhere is my card\nIs there a fee for sending money abroad?");
  await page.click("#predict-lines");
  await page.waitForSelector("#batch table", { timeout: 15000 });
  const batch = await page.$$eval("#batch tr", (rows) =>
    rows.slice(1).map((row) => ({ text: row.children[0].textContent, label: row.children[1].textContent })));

  console.log(JSON.stringify({ refused, label, bars, model, batch }));
} finally {
  await browser.close();
}
