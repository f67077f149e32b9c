// The demo page (demo/index.html with the route's client.js) in Chromium,
// behind basic_auth, storing in the embedded S3-compatible server.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import {
  Scratch, freePort, randomFile, sha256, caddyBinary, bcryptHash, startCaddy, launchChromium, screenshot, waitFor, repoDir
} from '../lib/harness.mjs'

const MiB = 1024 * 1024
const user = 'alice'
const password = 'demo-' + Math.random().toString(36).slice(2)

let scratch, caddy, browser

before(async () => {
  scratch = await Scratch.create()
  const bin = await caddyBinary(scratch)
  const port = await freePort()
  const hash = await bcryptHash(bin, password)
  caddy = await startCaddy(scratch, bin, {
    port,
    sites: `http://127.0.0.1:${port} {
	bind 127.0.0.1
	embedded_s3
	basic_auth {
		${user} ${hash}
	}
	handle_path /uploads/* {
		upload {
			multipart_threshold 6MiB
			part_size 5MiB
		}
	}
	handle_path /forms/* {
		upload {
			name forms
			method post
			max_size 1MiB
		}
	}
	handle {
		root * ${join(repoDir, 'demo')}
		file_server
	}
}`
  })
  browser = await launchChromium(scratch)
})

after(async () => {
  await scratch?.cleanup()
})

const auth = 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64')

/** Calls the upload API from the test itself (not the browser). */
async function api (method, path) {
  const res = await fetch(`${caddy.url}/uploads${path}`, { method, headers: { Authorization: auth } })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : null }
}

async function newPage () {
  const context = await browser.newContext({ baseURL: caddy.url, httpCredentials: { username: user, password } })
  const page = await context.newPage()
  page.consoleLog = []
  page.on('console', m => page.consoleLog.push(`${m.type()}: ${m.text()}`))
  page.on('pageerror', e => page.consoleLog.push(`pageerror: ${e.message}`))
  await page.goto('/')
  await page.getByRole('heading', { name: 'Upload files' }).waitFor()
  return { context, page }
}

/** Waits until the row of file name reaches one of states; fails on "error". */
async function waitState (page, name, states, timeout = 120000) {
  const row = page.locator(`li.upload[data-name="${name}"]`)
  try {
    await page.waitForFunction(({ name, states }) => {
      const li = document.querySelector(`li.upload[data-name="${CSS.escape(name)}"]`)
      return li && (states.includes(li.dataset.state) || li.dataset.state === 'error')
    }, { name, states }, { timeout, polling: 100 })
  } catch (err) {
    await screenshot(page, 'failure').catch(() => {})
    const now = await page.evaluate(() => [...document.querySelectorAll('li.upload')].map(li => `${li.dataset.name}: ${li.dataset.state}: ${li.querySelector('.status').textContent}`))
    throw new Error(`${name} did not reach ${states}: ${err.message}\nrows: ${now.join('; ')}\nconsole: ${page.consoleLog.join('\n')}`)
  }
  const state = await row.getAttribute('data-state')
  if (!states.includes(state)) {
    assert.fail(`${name}: state ${state}: ${await row.locator('.status').textContent()}`)
  }
  return row
}

/** Slows the page's uploads to bytesPerSecond with Chromium's network emulation; returns a function that lifts the limit. */
async function throttle (context, page, bytesPerSecond) {
  const cdp = await context.newCDPSession(page)
  await cdp.send('Network.enable')
  const set = uploadThroughput => cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput
  })
  await set(bytesPerSecond)
  return () => set(-1)
}

async function download (context, href) {
  const res = await context.request.get(href)
  assert.equal(res.status(), 200, `download of ${href}`)
  return res.body()
}

test('the demo page uploads a small and a multipart file, confirms them and links the same bytes', async () => {
  const small = await randomFile(scratch, 'small.bin', 300 * 1024)
  const large = await randomFile(scratch, 'large.bin', 13 * MiB)
  const { context, page } = await newPage()
  try {
    await page.setInputFiles('#files', [small.path, large.path])
    for (const f of [small, large]) {
      const row = await waitState(page, f.name, ['confirmed'])
      assert.equal(await row.locator('.status').textContent(), 'Confirmed')
      assert.equal(await row.locator('progress').getAttribute('value'), '100')
      const link = row.getByRole('link', { name: `Download ${f.name}` })
      const href = await link.getAttribute('href')
      const id = await row.getAttribute('data-id')
      assert.equal(href, `/uploads/${id}/download`)

      const rec = await api('GET', `/${id}`)
      assert.equal(rec.status, 200)
      assert.equal(rec.body.status, 'confirmed')
      assert.equal(rec.body.size, f.size)
      assert.equal(rec.body.filename, f.name)
      assert.equal(sha256(await download(context, href)), f.sha256, `${f.name}: downloaded bytes differ`)
    }
    assert.deepEqual(await page.evaluate(() => localStorage.getItem('caddyupload:pending')), '[]')
    await screenshot(page, 'demo-upload')
  } finally {
    await context.close()
  }
})

test('a page reload during a multipart upload resumes it with the same file and sends only the missing parts', async () => {
  const file = await randomFile(scratch, 'resumed.bin', 26 * MiB) // 6 parts of 5 MiB, at most 4 at a time
  const { context, page } = await newPage()
  try {
    const partsSent = []
    page.on('requestfinished', req => {
      const u = new URL(req.url())
      if (req.method() === 'PUT' && u.searchParams.has('partNumber')) partsSent.push(Number(u.searchParams.get('partNumber')))
    })
    const unthrottle = await throttle(context, page, 2 * MiB)
    await page.setInputFiles('#files', [file.path])
    const row = await waitState(page, file.name, ['uploading'])
    const id = await waitFor('the upload id', async () => (await row.getAttribute('data-id')) ?? undefined)
    // Reload as soon as storage holds a part: the others are in flight or not started.
    await waitFor('a first part in storage', async () => {
      const r = await api('GET', `/${id}/parts`)
      return r.status === 200 && r.body.parts.length > 0 ? true : undefined
    })
    await page.reload()
    // A part counts as sent when this browser saw storage accept it; the
    // client keeps those ETags with the upload, to resume from.
    const listed = (await api('GET', `/${id}/parts`)).body.parts
    const [saved] = JSON.parse(await page.evaluate(() => localStorage.getItem('caddyupload:pending')))
    assert.equal(saved.id, id)
    const unquote = e => String(e).replace(/^"|"$/g, '')
    const sent = listed.filter(p => saved.etags[p.number] && unquote(saved.etags[p.number]) === unquote(p.etag)).map(p => p.number)
    assert.ok(sent.length >= 1 && sent.length < 6, `parts sent before the reload: ${sent}`)

    const again = await waitState(page, file.name, ['interrupted'])
    assert.equal(await again.getAttribute('data-id'), id)
    assert.match(await again.locator('.status').textContent(), /choose the same file/i)
    await screenshot(page, 'demo-interrupted')

    await unthrottle()
    partsSent.length = 0
    const signing = []
    page.on('request', req => {
      if (req.method() === 'POST' && new URL(req.url()).pathname === `/uploads/${id}/parts`) signing.push(req.postDataJSON())
    })
    await page.setInputFiles('#files', [file.path])
    await waitState(page, file.name, ['confirmed'])
    assert.equal(await page.locator('li.upload').count(), 1, 'the resumed upload keeps its row')
    assert.deepEqual(partsSent.filter(n => sent.includes(n)), [], 'parts sent before the reload were sent again')
    assert.deepEqual([...sent, ...partsSent].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6])
    // The resumed parts are hashed and signed with their checksums; the
    // parts already stored are neither.
    const resigned = signing.flatMap(b => b.numbers)
    assert.deepEqual(resigned.filter(n => sent.includes(n)), [], 'parts stored before the reload were signed again')
    assert.ok(resigned.length >= 6 - sent.length, `parts signed after the reload: ${resigned}`)
    for (const b of signing) {
      assert.equal(b.sha256?.length, b.numbers.length, `signed without checksums: ${JSON.stringify(b)}`)
      assert.ok(b.sha256.every(h => /^[0-9a-f]{64}$/.test(h)))
    }

    const rec = await api('GET', `/${id}`)
    assert.equal(rec.body.status, 'confirmed')
    assert.equal(rec.body.size, file.size)
    const href = await again.getByRole('link', { name: `Download ${file.name}` }).getAttribute('href')
    assert.equal(sha256(await download(context, href)), file.sha256, 'the resumed upload stored other bytes')
    assert.equal(await page.evaluate(() => localStorage.getItem('caddyupload:pending')), '[]')
    await screenshot(page, 'demo-resumed')
  } finally {
    await context.close()
  }
})

test('cancel aborts the upload', async () => {
  const file = await randomFile(scratch, 'cancelled.bin', 13 * MiB)
  const { context, page } = await newPage()
  try {
    await throttle(context, page, 1 * MiB)
    await page.setInputFiles('#files', [file.path])
    const row = await waitState(page, file.name, ['uploading'])
    await page.waitForFunction(() => Number(document.querySelector('li.upload progress')?.value) > 0, null, { timeout: 120000 })
    const id = await row.getAttribute('data-id')
    await row.getByRole('button', { name: `Cancel ${file.name}` }).click()
    await waitState(page, file.name, ['cancelled'])
    assert.equal(await row.locator('.status').textContent(), 'Cancelled')
    assert.equal(await row.getByRole('link').isVisible(), false)

    const rec = await api('GET', `/${id}`)
    assert.equal(rec.body.status, 'aborted')
    const parts = await api('GET', `/${id}/parts`)
    assert.equal(parts.status, 410)
    assert.equal(await page.evaluate(() => localStorage.getItem('caddyupload:pending')), '[]')
    await screenshot(page, 'demo-cancelled')
  } finally {
    await context.close()
  }
})

test('the client sends a POST policy form where the route says so, and reports the route\'s error messages', async () => {
  const small = await randomFile(scratch, 'form.bin', 200 * 1024)
  const big = await randomFile(scratch, 'too-big.bin', 2 * MiB)
  const { context, page } = await newPage()
  try {
    const storage = []
    page.on('request', req => {
      if (new URL(req.url()).pathname.startsWith('/caddyupload')) storage.push(req.method())
    })
    // A file input of its own: the page's would start its uploads to /uploads.
    await page.evaluate(() => {
      const input = Object.assign(document.createElement('input'), { type: 'file', multiple: true, id: 'other-files', hidden: true })
      document.body.append(input)
    })
    await page.setInputFiles('#other-files', [small.path, big.path])
    const results = await page.evaluate(async () => {
      const client = await import('/forms/client.js')
      const out = {}
      for (const file of document.getElementById('other-files').files) {
        try {
          let progress = 0
          const rec = await client.upload(file, { base: '/forms', onProgress: loaded => { progress = loaded } })
          out[file.name] = { id: rec.id, status: rec.status, size: rec.size, progress }
        } catch (err) {
          out[file.name] = { error: err.message, name: err.name, status: err.status, code: err.code }
        }
      }
      return out
    })
    assert.deepEqual(storage, ['POST'], 'one form POST to storage, for the small file')
    assert.equal(results[small.name].status, 'confirmed')
    assert.equal(results[small.name].progress, small.size)
    const rec = await fetch(`${caddy.url}/forms/${results[small.name].id}`, { headers: { Authorization: auth } }).then(r => r.json())
    assert.equal(rec.status, 'confirmed')
    assert.equal(rec.size, small.size)

    const refused = results[big.name]
    assert.equal(refused.name, 'UploadError')
    assert.equal(refused.status, 413)
    assert.equal(refused.code, 'too_large')
    assert.match(refused.error, /larger than this route's limit of 1048576 bytes/)
  } finally {
    await context.close()
  }
})
