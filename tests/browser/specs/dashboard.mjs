// Sign-in, overview and the endpoints table: filters, search, live refresh,
// code samples, terminate with confirmation, sign-out.
import assert from 'node:assert/strict';
import { signIn, createEndpoint } from '../lib.mjs';

export default async function ({ page, env, shot, step }) {
  await step('a wrong token is refused with a message', async () => {
    await page.goto(`${env.url}/`);
    assert.match(page.url(), /\/login\?next=/);
    await page.fill('#token', 'sym_not-a-real-token');
    await page.click('button[type=submit]');
    await page.waitForSelector('.alert-error');
    assert.match(await page.textContent('.alert-error'), /not valid/);
    await shot('login-error');
  });

  await step('sign in and see the overview', async () => {
    await signIn(page, env);
    assert.equal(await page.textContent('h1'), 'Overview');
    for (const id of ['#stat-active', '#stat-requests', '#stat-credits', '#stat-latency']) {
      assert.ok((await page.textContent(id)).trim().length > 0, id);
    }
    const cookies = await page.context().cookies();
    const session = cookies.find((cookie) => cookie.name === 'sy_session');
    assert.ok(session, 'session cookie set');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    await shot('overview');
  });

  let chat;
  await step('the endpoints table lists endpoints and filters them', async () => {
    chat = (await createEndpoint(env, { name: 'support-bot' })).endpoint;
    await createEndpoint(env, { name: 'search-embedder', modality: 'embedding' });
    await page.click('nav a[href="/endpoints"]');
    await page.waitForSelector('#endpoint-rows tr[data-endpoint-id]');
    assert.equal(await page.locator('#endpoint-rows tr[data-endpoint-id]').count(), 2);
    await page.selectOption('#modality', 'embedding');
    await page.waitForFunction(() => document.querySelectorAll('#endpoint-rows tr[data-endpoint-id]').length === 1);
    assert.match(await page.textContent('#endpoint-rows'), /search-embedder/);
    assert.match(page.url(), /modality=embedding/);
    await page.selectOption('#modality', '');
    await page.fill('#q', 'support');
    await page.waitForFunction(() => {
      const rows = document.querySelectorAll('#endpoint-rows tr[data-endpoint-id]');
      return rows.length === 1 && rows[0].textContent.includes('support-bot');
    });
    await page.fill('#q', 'no-such-endpoint');
    await page.waitForSelector('#endpoint-rows .empty-row');
    await page.fill('#q', '');
    await page.waitForFunction(() => document.querySelectorAll('#endpoint-rows tr[data-endpoint-id]').length === 2);
    await shot('endpoints');
  });

  await step('a new endpoint appears live, without reloading', async () => {
    await page.waitForSelector('body[data-live=on]');
    await page.evaluate(() => { window.__notReloaded = true; });
    await createEndpoint(env, { name: 'live-arrival' });
    await page.waitForFunction(() => document.querySelector('#endpoint-rows').textContent.includes('live-arrival'), null, { timeout: 15000 });
    assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was not reloaded');
  });

  await step('code samples open in a dialog with four tabs', async () => {
    await page.click(`tr[data-endpoint-id="${chat.id}"] [data-code]`);
    await page.waitForSelector('#code-dialog[open] [role=tab]');
    const tabs = await page.locator('#code-dialog [role=tab]').allTextContents();
    assert.deepEqual(tabs.map((t) => t.trim()), ['Python', 'TypeScript', 'cURL', 'OpenAI SDK compatible']);
    assert.match(await page.textContent('#code-dialog [role=tabpanel]:not([hidden])'), /base_url="http:\/\/127\.0\.0\.1:\d+\/v1"/);
    await page.focus('#code-dialog [role=tab][aria-selected=true]');
    await page.keyboard.press('ArrowRight');
    assert.equal((await page.textContent('#code-dialog [role=tab][aria-selected=true]')).trim(), 'TypeScript');
    assert.match(await page.textContent('#code-dialog [role=tabpanel]:not([hidden])'), /baseURL/);
    await shot('code-samples');
    await page.click('#code-close');
  });

  await step('copy URL gives feedback', async () => {
    await page.click(`tr[data-endpoint-id="${chat.id}"] [data-copy]`);
    await page.waitForSelector('.toast-success');
  });

  await step('terminate asks first, then removes the row', async () => {
    const row = `tr[data-endpoint-id="${chat.id}"]`;
    await page.click(`${row} [data-terminate]`);
    await page.waitForSelector('#confirm-dialog[open]');
    assert.match(await page.textContent('#confirm-title'), /Terminate support-bot/);
    await shot('terminate-confirm');
    await page.click('#confirm-dialog button[value=cancel]');
    assert.equal(await page.locator(row).count(), 1, 'cancel keeps it');
    await page.click(`${row} [data-terminate]`);
    await page.click('#confirm-ok');
    await page.waitForSelector(row, { state: 'detached' });
    await page.waitForSelector('.toast-success');
  });

  await step('phone width stays readable', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${env.url}/endpoints`);
    await shot('endpoints-phone');
    const overflow = await page.evaluate(() => {
      const wide = [...document.querySelectorAll('body *')]
        .filter((element) => element.getBoundingClientRect().right > window.innerWidth + 1)
        .map((element) => `${element.tagName.toLowerCase()}.${element.className}:${Math.round(element.getBoundingClientRect().right)}`);
      return { by: document.documentElement.scrollWidth - window.innerWidth, wide: wide.slice(0, 8) };
    });
    assert.ok(overflow.by <= 1, `page scrolls sideways by ${overflow.by}px: ${overflow.wide.join(', ')}`);
    await page.goto(`${env.url}/`);
    await shot('overview-phone');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await step('sign out ends the session', async () => {
    await page.goto(`${env.url}/`);
    await page.click('.sidebar-foot button[type=submit]');
    await page.waitForURL(/\/login/);
    await page.goto(`${env.url}/endpoints`);
    assert.match(page.url(), /\/login\?next=%2Fendpoints/);
  });
}
