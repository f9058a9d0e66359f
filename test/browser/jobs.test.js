#!/usr/bin/env node
// test/browser/jobs.test.js - examples/jobs/app.lua end to end in headless
// Chromium: the page uploads a generated picture (a 2 MB PNG of noise, so
// the upload itself reports progress), the server converts it with
// ImageMagick in four steps and publishes the progress to /jobs/<id>; the
// test watches the page's progress bar climb to 100 %, clicks the result
// link, and checks the download is a JPEG of the expected size.
//
//   node test/browser/jobs.test.js
//
// Prints "ok - name" / "not ok - name" and ends with "N passed, N failed";
// exits 1 on any failure. Bounded to 180 s.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');
const h = require('./harness');
const { assert, assertEqual, test } = h;

const FILE_MS = 180000;
const TEST_MS = 150000;         // four ImageMagick runs on a loaded machine
const JOB_MS = 120000;

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bx-jobs-test-'));
  const browser = await h.launchBrowser();
  let app = null;
  try {
    await test('jobs example: upload, live progress to 100 %, download a valid JPEG', async () => {
      const input = path.join(tmp, 'noise.png');
      execFileSync('convert', ['-size', '1000x750', 'xc:gray', '+noise', 'Random', input]);
      const png = fs.readFileSync(input);
      assert(png.length > 1024 * 1024, `the picture is large enough to report upload progress (${png.length} B)`);
      app = await h.startServer('jobs', ['lua5.4', 'bin/bayeux', 'examples/jobs/app.lua'],
                                { PORT: '0', STEP_DELAY: '0.5', JOBS_DIR: path.join(tmp, 'jobs') });
      const page = await h.openPage(browser, new URL(app.url).origin + '/', {});
      await page.setInputFiles('#file', { name: 'noise.png', mimeType: 'image/png', buffer: png });
      await page.click('#go');
      await page.waitForFunction(() => document.getElementById('bar').value === 100 &&
                                 /^done/.test(document.getElementById('status').textContent),
                                 null, { timeout: JOB_MS }).catch(async () => {
        throw new Error('the job never finished on the page; it reads ' +
                        JSON.stringify(await page.textContent('#status')) + '\n' + app.log);
      });
      const seen = await page.evaluate(() => window.progressSeen);
      assert(seen.some((p) => p > 0 && p < 20), `upload progress was shown (${seen})`);
      assert(seen.some((p) => p > 20 && p < 100), `conversion progress was shown (${seen})`);
      assertEqual(seen[seen.length - 1], 100, 'the bar ends at 100');
      assertEqual(await page.textContent('#status'), 'done: 375x500', 'the page gives the size');
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#result')]);
      const saved = path.join(tmp, 'result.jpg');
      await download.saveAs(saved);
      const info = execFileSync('identify', ['-format', '%m %w %h', saved]).toString();
      assertEqual(info, 'JPEG 375 500', 'the download is the converted picture');
      assertEqual(page.net.consoleErrors, [], 'no page errors');
      await page.close();
    }, TEST_MS);
  } finally {
    await browser.close().catch(() => {});
    if (app) await h.stopServer(app);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

h.run(main, FILE_MS);
