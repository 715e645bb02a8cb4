// The web page with a token-classification model, in headless Chromium.
// Run by crates/kiln-cli/tests/serve.rs against a running `serve`:
//   KILN_E2E_MODULES=.tools/e2e/node_modules node tests/e2e/tagger.mjs BASE_URL TEXT
// Prints the highlighted entities a user would see, as JSON.
import { createRequire } from "node:module";

const [base, text] = process.argv.slice(2);
const require = createRequire(`${process.env.KILN_E2E_MODULES}/`);
const { chromium } = require("playwright-core");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
try {
  const page = await browser.newPage();
  await page.goto(base);
  await page.waitForFunction(() => document.querySelector("#model").textContent.includes("version"));
  const model = await page.textContent("#model");
  await page.fill("#text", text);
  await page.click("#predict");
  await page.waitForSelector("#single .tagged", { timeout: 15000 });
  const marks = await page.$$eval("#single mark", (marks) =>
    marks.map((mark) => ({ text: mark.firstChild.textContent, type: mark.querySelector("sub").textContent })));
  const shown = await page.$eval("#single .tagged", (box) => {
    const copy = box.cloneNode(true);
    copy.querySelectorAll("sub").forEach((sub) => sub.remove());
    return copy.textContent;
  });
  console.log(JSON.stringify({ model, marks, shown }));
} finally {
  await browser.close();
}
