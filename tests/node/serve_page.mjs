// The chat page of lowbit serve in headless Chromium (Debian's package, driven by playwright-core):
// types a message, waits for streamed text to appear, clicks Stop, switches the model picker to a
// delta and asks again (the request names the delta and its reply streams in), keeps a screenshot.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, key, shot, delta] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "lowbit-chromium-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
let failed = null;
try {
  const page = ctx.pages()[0] || (await ctx.newPage());
  const external = [];
  const asked = []; // the "model" of each chat request the page sends
  page.on("request", (r) => {
    if (!r.url().startsWith(url)) external.push(r.url());
    else if (r.url().endsWith("/v1/chat/completions")) asked.push(JSON.parse(r.postData() || "{}").model);
  });
  await page.goto(url + "/");
  await page.fill("#key", key);
  await page.dispatchEvent("#key", "change");
  await page.waitForFunction(() => document.querySelectorAll("#model option").length > 0, null, { timeout: 10000 });
  await page.fill("#maxtok", "200");
  await page.fill("#input", "Tell me a story about a dog.");
  await page.click("#send");
  await page.waitForFunction(() => (document.querySelector(".msg.assistant")?.textContent || "").length > 0, null, { timeout: 20000 });
  const first = await page.textContent(".msg.assistant");
  // the reply may end between a check and a click, so press Stop inside the page in one step
  await page.evaluate(() => { const b = document.getElementById("stop"); if (!b.disabled) b.click(); });
  await page.waitForFunction(() => ["stopped", "done"].includes(document.getElementById("status").textContent), null, { timeout: 20000 });
  const status = await page.textContent("#status");
  const user = await page.textContent(".msg.user");
  await page.screenshot({ path: shot.replace(/\.png$/, "_base.png"), fullPage: true });
  await page.click("#clear"); // a new conversation: the first one may fill the context
  await page.selectOption("#model", delta);
  await page.fill("#maxtok", "24");
  await page.fill("#input", "Tell me about a puppy.");
  await page.click("#send");
  await page.waitForFunction(() => document.getElementById("status").textContent === "done", null, { timeout: 30000 })
    .catch(async (e) => { throw new Error(e + "; status " + (await page.textContent("#status")) + "; log " + (await page.textContent("#log"))); });
  const second = await page.textContent(".msg.assistant");
  await page.screenshot({ path: shot, fullPage: true });
  if (user !== "Tell me a story about a dog.") failed = "the user message is not shown: " + user;
  else if (!first) failed = "no streamed text";
  else if (external.length) failed = "the page fetched from elsewhere: " + external.join(" ");
  else if (asked.length !== 2 || asked[1] !== delta || asked[0] === delta) failed = "the requests named models " + asked.join(", ");
  else if (!second) failed = "no reply from the delta " + delta;
  console.log(JSON.stringify({ first, status, second, asked }));
} catch (e) {
  failed = String(e);
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
if (failed) { console.error("FAIL:", failed); process.exit(1); }
