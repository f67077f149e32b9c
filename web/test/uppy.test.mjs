// Stock Uppy against the route's Companion-compatible /s3 routes, in
// Chromium, with tokens from Dex: Uppy 6 (Dashboard, companionEndpoint,
// cookie) and Uppy 5 (endpoint, Authorization header).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  Scratch, freePort, randomFile, sha256, caddyBinary, startCaddy, startDex, bundlePages, launchChromium, screenshot
} from '../lib/harness.mjs'

const MiB = 1024 * 1024
const cookieName = 'caddyupload_token'
const alice = { email: 'alice@example.com', password: 'alice-' + Math.random().toString(36).slice(2), userID: 'alice' }

let scratch, caddy, dex, browser, token

before(async () => {
  scratch = await Scratch.create()
  const bin = await caddyBinary(scratch)
  dex = await startDex(scratch, bin, [alice])
  token = await dex.token(alice.email, alice.password)
  const pages = await bundlePages(scratch)
  const port = await freePort()
  caddy = await startCaddy(scratch, bin, {
    port,
    sites: `http://127.0.0.1:${port} {
	bind 127.0.0.1
	embedded_s3
	handle_path /uploads/* {
		upload {
			oidc {
				issuer ${dex.issuer}
				audience ${dex.clientID}
				cookie ${cookieName}
			}
			multipart_threshold 6MiB
			part_size 5MiB
		}
	}
	handle {
		root * ${pages}
		file_server
	}
}`
  })
  browser = await launchChromium(scratch)
})

after(async () => {
  await scratch?.cleanup()
})

/** Calls the upload API from the test itself, with the bearer token. */
async function api (path) {
  const res = await fetch(`${caddy.url}/uploads${path}`, { headers: { Authorization: `Bearer ${token}` } })
  return { status: res.status, body: await res.arrayBuffer().then(b => Buffer.from(b)) }
}

/**
 * Records the calls the page makes to the route (method, path with ids
 * replaced, whether an Authorization header was sent) and to storage
 * (method and the kind of request), never URLs' query strings or headers'
 * values.
 */
function recordCalls (page) {
  const calls = []
  page.on('request', req => {
    const u = new URL(req.url())
    if (u.pathname.startsWith('/uploads/')) {
      const path = u.pathname.replace(/\/[a-z0-9]{26,}(?=\/|$)/, '/{id}')
      calls.push({ to: 'route', method: req.method(), path, query: [...u.searchParams.keys()].sort().join(','), authorization: 'authorization' in req.headers() })
    } else if (u.pathname.startsWith('/caddyupload')) {
      const kind = u.searchParams.has('partNumber') ? 'part' : req.method() === 'POST' ? 'form' : 'object'
      calls.push({ to: 'storage', method: req.method(), kind })
    }
  })
  return calls
}

function summary (calls) {
  const counts = new Map()
  for (const c of calls) {
    const k = c.to === 'route'
      ? `${c.method} ${c.path}${c.query ? '?' + c.query : ''}${c.authorization ? ' [Authorization]' : ''}`
      : `${c.method} storage ${c.kind}`
    counts.set(k, (counts.get(k) ?? 0) + 1)
  }
  return [...counts].map(([k, n]) => `${n} × ${k}`)
}

async function waitResults (page, names) {
  try {
    await page.waitForFunction(names => names.every(n => window.results?.[n]), names, { timeout: 120000, polling: 100 })
  } catch (err) {
    await screenshot(page, 'failure').catch(() => {})
    throw new Error(`${err.message}\nresults: ${JSON.stringify(await page.evaluate(() => window.results).catch(() => null))}\nconsole: ${page.consoleLog.join('\n')}`)
  }
  return page.evaluate(() => window.results)
}

/** Checks, independently of the page, that each upload is confirmed and holds the file's bytes. */
async function assertStored (results, files) {
  for (const f of files) {
    const r = results[f.name]
    assert.ok(!r.error, `${f.name}: ${r.error}`)
    const rec = await api(`/${r.id}`)
    assert.equal(rec.status, 200)
    const body = JSON.parse(rec.body)
    assert.equal(body.status, 'confirmed', f.name)
    assert.equal(body.size, f.size, f.name)
    assert.equal(body.filename, f.name)
    const dl = await api(`/${r.id}/download`)
    assert.equal(dl.status, 200, `download of ${f.name}`)
    assert.equal(sha256(dl.body), f.sha256, `${f.name}: downloaded bytes differ`)
  }
}

async function newPage (cookie) {
  const context = await browser.newContext({ baseURL: caddy.url })
  if (cookie) {
    await context.addCookies([{ name: cookieName, value: token, url: caddy.url, httpOnly: true, sameSite: 'Strict' }])
  }
  const page = await context.newPage()
  page.consoleLog = []
  page.on('console', m => page.consoleLog.push(`${m.type()}: ${m.text()}`))
  page.on('pageerror', e => page.consoleLog.push(`pageerror: ${e.message}`))
  return { context, page }
}

test('Uppy 6 Dashboard (companionEndpoint, token cookie) uploads a POST-form file and a multipart file', async t => {
  const single = await randomFile(scratch, 'uppy6-single.bin', 700 * 1024)
  const multi = await randomFile(scratch, 'uppy6-multi.bin', 13 * MiB)
  const { context, page } = await newPage(true)
  try {
    const calls = recordCalls(page)
    await page.goto('/uppy6.html')
    await page.locator('.uppy-Dashboard').waitFor()
    await page.locator('input.uppy-Dashboard-input[type=file]:not([webkitdirectory])').first().setInputFiles([single.path, multi.path])
    await page.getByRole('button', { name: /^Upload 2 files/ }).click()
    const results = await waitResults(page, [single.name, multi.name])
    await page.getByText('Complete', { exact: true }).first().waitFor()
    await screenshot(page, 'uppy6-dashboard')

    await assertStored(results, [single, multi])

    const route = calls.filter(c => c.to === 'route')
    assert.ok(route.every(c => !c.authorization), 'Uppy 6 sent an Authorization header')
    assert.ok(route.some(c => c.method === 'GET' && c.path === '/uploads/s3/params'))
    assert.ok(route.some(c => c.method === 'POST' && c.path === '/uploads/s3/multipart'))
    assert.ok(route.some(c => c.method === 'POST' && c.path === '/uploads/s3/multipart/{id}/complete'))
    assert.equal(calls.filter(c => c.to === 'storage' && c.kind === 'form').length, 1)
    assert.equal(calls.filter(c => c.to === 'storage' && c.kind === 'part').length, 3)
    t.diagnostic('requests made by the page:')
    for (const line of summary(calls)) t.diagnostic(line)
  } finally {
    await context.close()
  }
})

test('Uppy 5 (endpoint, Authorization header) uploads a POST-form file and a multipart file', async t => {
  const single = await randomFile(scratch, 'uppy5-single.bin', 700 * 1024)
  const multi = await randomFile(scratch, 'uppy5-multi.bin', 13 * MiB)
  const { context, page } = await newPage(false)
  try {
    const calls = recordCalls(page)
    await page.goto('/uppy5.html')
    await page.waitForFunction(() => typeof window.start === 'function')
    await page.evaluate(token => window.start(token), token)
    await page.setInputFiles('#files', [single.path, multi.path])
    const results = await waitResults(page, [single.name, multi.name])
    await screenshot(page, 'uppy5')

    await assertStored(results, [single, multi])

    const s3 = calls.filter(c => c.to === 'route' && c.path.startsWith('/uploads/s3/'))
    assert.ok(s3.length > 0 && s3.every(c => c.authorization), 'Uppy 5 called the route without its Authorization header')
    assert.ok(s3.some(c => c.method === 'GET' && c.path === '/uploads/s3/params'))
    assert.ok(s3.some(c => c.method === 'POST' && c.path === '/uploads/s3/multipart/{id}/complete'))
    assert.equal(calls.filter(c => c.to === 'storage' && c.kind === 'form').length, 1)
    assert.equal(calls.filter(c => c.to === 'storage' && c.kind === 'part').length, 3)
    t.diagnostic('requests made by the page:')
    for (const line of summary(calls)) t.diagnostic(line)
  } finally {
    await context.close()
  }
})
