// The playground against a fake upstream that streams one chunk every 300 ms:
// the output grows while the stream runs, TTFT and latency are shown, a row
// joins the "last 10 tests" and the rows survive a reload (they are usage
// records); then the billing page shows those requests.
import assert from 'node:assert/strict';
import { api, signIn } from '../lib.mjs';

const seconds = (text) => {
  const match = text.trim().match(/^([\d.]+) (ms|s)$/);
  assert.ok(match, `a duration: ${text}`);
  return Number(match[1]) / (match[2] === 'ms' ? 1000 : 1);
};

export default async function ({ page, env, shot, step, newPage }) {
  const slow = env.upstreamUrl.replace(/\/v1$/, '/slowstream');
  const created = await api(env, 'POST', '/api/v1/endpoints', {
    name: 'pg-slow',
    modality: 'llm',
    provider: 'external',
    upstream: { base_url: slow, api: 'openai' },
  });
  const endpointId = created.endpoint.id;

  await step('sign in and open the playground', async () => {
    await signIn(page, env);
    await page.goto(`${env.url}/playground?endpoint=${endpointId}`);
    assert.equal(await page.inputValue('#pg-endpoint'), endpointId);
    assert.equal(await page.isVisible('#pg-history-empty'), true);
    await shot('empty');
  });

  await step('a streamed answer arrives piece by piece', async () => {
    await page.fill('#pg-prompt', 'Count to five, slowly.');
    await page.fill('#pg-max-tokens', '64');
    await page.fill('#pg-temperature', '0.3');
    await page.fill('#pg-top-p', '0.9');
    await page.click('#pg-run');
    await page.waitForFunction(() => document.getElementById('pg-output').textContent.includes('tok0'));
    const partial = await page.textContent('#pg-output');
    assert.ok(!partial.includes('tok4'), `the output grows while streaming: ${partial}`);
    assert.equal(await page.textContent('#pg-state'), 'streaming');
    assert.notEqual((await page.textContent('#pg-ttft')).trim(), '—', 'TTFT is shown at the first token');
    await shot('streaming');
    await page.waitForFunction(() => document.getElementById('pg-state').textContent === 'done', null, { timeout: 10000 });
    assert.equal((await page.textContent('#pg-output')).trim(), 'tok0 tok1 tok2 tok3 tok4');
    assert.ok(Number(await page.getAttribute('#pg-output', 'data-chunks')) >= 5);
    const ttft = seconds(await page.textContent('#pg-ttft'));
    const latency = seconds(await page.textContent('#pg-latency'));
    assert.ok(ttft < latency, `TTFT ${ttft} s < latency ${latency} s`);
    assert.ok(latency >= 1.2, `five chunks 300 ms apart: ${latency} s`);
    assert.equal((await page.textContent('#pg-status')).trim(), '200');
    assert.equal((await page.textContent('#pg-tokens')).trim(), '11 / 5');
    const rows = await page.$$eval('#pg-history-rows tr:not(.empty-row)', (items) => items.map((item) => item.textContent));
    assert.equal(rows.length, 1);
    assert.match(rows[0], /pg-slow/);
    assert.match(rows[0], /200/);
    assert.match(rows[0], /streamed/);
    assert.equal(await page.isHidden('#pg-history-empty'), true);
    await shot('streamed');
  });

  await step('a whole answer, sent from the keyboard', async () => {
    await page.uncheck('#pg-stream');
    await page.focus('#pg-prompt');
    await page.keyboard.press('Control+Enter');
    await page.waitForFunction(() => document.getElementById('pg-state').textContent === 'done', null, { timeout: 10000 });
    assert.equal((await page.textContent('#pg-output')).trim(), 'Hello there');
    assert.equal(await page.$$eval('#pg-history-rows tr:not(.empty-row)', (items) => items.length), 2);
  });

  await step('the last tests survive a reload', async () => {
    await page.waitForTimeout(300);
    await page.reload();
    const rows = await page.$$eval('#pg-history-rows tr:not(.empty-row)', (items) => items.map((item) => item.textContent.replace(/\s+/g, ' ')));
    assert.equal(rows.length, 2, rows.join('\n'));
    assert.match(rows[0], /whole/);
    assert.match(rows[1], /streamed/);
    assert.ok(rows.every((row) => row.includes('pg-slow') && row.includes('200')));
    await shot('history');
  });

  await step('billing shows the two requests', async () => {
    await page.goto(`${env.url}/billing?period=day`);
    const row = await page.textContent(`tr[data-endpoint-id="${endpointId}"]`);
    assert.match(row.replace(/\s+/g, ' '), /pg-slow 2 0/);
    assert.equal((await page.textContent('#billing-requests')).trim(), '2');
    assert.match(await page.textContent('#ledger-table'), /Usage charge/);
    await shot('billing');
  });

  await step('phone width', async () => {
    const phone = await newPage({ label: 'phone', viewport: { width: 390, height: 844 } });
    await signIn(phone, env);
    await phone.goto(`${env.url}/playground?endpoint=${endpointId}`);
    const { width, widest } = await phone.evaluate(() => ({
      width: document.documentElement.scrollWidth,
      widest: [...document.querySelectorAll('body *')]
        .filter((element) => element.getBoundingClientRect().right > 391)
        .slice(0, 5)
        .map((element) => `${element.tagName.toLowerCase()}#${element.id}.${element.className}`),
    }));
    assert.ok(width <= 390, `no horizontal scrolling (${width}px): ${widest.join(', ')}`);
    await shot('phone-390', phone);
    await phone.goto(`${env.url}/billing`);
    await shot('billing-phone-390', phone);
  });
}
