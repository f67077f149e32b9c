// The route's client.js declares SHA-256 checksums (WebCrypto) in Chromium:
// a route with require_checksum takes its single and multipart uploads, and
// storage (the embedded versitygw) refuses a part whose bytes differ from
// the checksum signed into its URL.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { readFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import {
  Scratch, freePort, randomFile, sha256, caddyBinary, bcryptHash, startCaddy, launchChromium, repoDir
} from '../lib/harness.mjs'

const MiB = 1024 * 1024
const user = 'alice'
const password = 'sums-' + Math.random().toString(36).slice(2)

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
	handle_path /sums/* {
		upload {
			name sums
			require_checksum
			multipart_threshold 6MiB
			part_size 5MiB
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
  const res = await fetch(`${caddy.url}/sums${path}`, { method, headers: { Authorization: auth } })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : null }
}

/** A page of the site (127.0.0.1 is a secure context: WebCrypto works) with the files in a file input of its own. */
async function pageWith (files) {
  const context = await browser.newContext({ baseURL: caddy.url, httpCredentials: { username: user, password } })
  const page = await context.newPage()
  await page.goto('/')
  await page.evaluate(() => {
    const input = Object.assign(document.createElement('input'), { type: 'file', multiple: true, id: 'sum-files', hidden: true })
    document.body.append(input)
  })
  await page.setInputFiles('#sum-files', files.map(f => f.path))
  return { context, page }
}

test('a route with require_checksum takes the client\'s single and multipart uploads, and refuses them without checksums', async () => {
  const small = await randomFile(scratch, 'small.bin', 300 * 1024)
  const large = await randomFile(scratch, 'large.bin', 12 * MiB) // 3 parts of 5, 5 and 2 MiB
  const { context, page } = await pageWith([small, large])
  try {
    const puts = []
    page.on('request', req => {
      if (req.method() === 'PUT') puts.push({ part: new URL(req.url()).searchParams.get('partNumber'), sum: req.headers()['x-amz-checksum-sha256'] })
    })
    const results = await page.evaluate(async () => {
      const client = await import('/sums/client.js')
      const out = {}
      for (const file of document.getElementById('sum-files').files) {
        const r = out[file.name] = {}
        // The negative first: with checksums off the route refuses the file.
        try {
          await client.upload(file, { base: '/sums', checksums: false, multipartThreshold: 6 * 1024 * 1024 })
          r.without = 'uploaded'
        } catch (err) {
          r.without = { status: err.status, code: err.code, message: err.message }
        }
        try {
          const rec = await client.upload(file, { base: '/sums', multipartThreshold: 6 * 1024 * 1024 })
          r.with = { id: rec.id, status: rec.status, size: rec.size, sha256: rec.sha256 ?? '' }
        } catch (err) {
          r.with = { error: err.message }
        }
      }
      return out
    })
    for (const f of [small, large]) {
      const r = results[f.name]
      assert.equal(r.without.status, 400, `${f.name} without checksums: ${JSON.stringify(r.without)}`)
      assert.equal(r.without.code, 'invalid_request')
      assert.match(r.without.message, /requires (the file's|each part's) sha256/)
      assert.equal(r.with.status, 'confirmed', `${f.name} with checksums: ${JSON.stringify(r.with)}`)
      assert.equal(r.with.size, f.size)
      const rec = await api('GET', `/${r.with.id}`)
      assert.equal(rec.body.status, 'confirmed')
      assert.equal(rec.body.size, f.size)
      const res = await context.request.get(`/sums/${r.with.id}/download`)
      assert.equal(res.status(), 200)
      assert.equal(sha256(await res.body()), f.sha256, `${f.name}: downloaded bytes differ`)
    }
    // A single PUT declares the whole file's checksum, a multipart upload
    // each part's (sent as the signed header), never the file's.
    assert.equal(results[small.name].with.sha256, small.sha256)
    assert.equal(results[large.name].with.sha256, '')
    const partPuts = puts.filter(p => p.part).sort((a, b) => a.part - b.part)
    assert.deepEqual(partPuts.map(p => p.part), ['1', '2', '3'])
    const bytes = await readFile(large.path)
    const b64 = buf => createHash('sha256').update(buf).digest('base64')
    assert.deepEqual(partPuts.map(p => p.sum), [b64(bytes.subarray(0, 5 * MiB)), b64(bytes.subarray(5 * MiB, 10 * MiB)), b64(bytes.subarray(10 * MiB))])
    assert.deepEqual(puts.filter(p => !p.part).map(p => p.sum), [Buffer.from(small.sha256, 'hex').toString('base64')])
  } finally {
    await context.close()
  }
})

test('storage refuses a part signed with another checksum, and takes it signed with its own', async () => {
  const file = await randomFile(scratch, 'parts.bin', 12 * MiB)
  const { context, page } = await pageWith([file])
  try {
    const out = await page.evaluate(async () => {
      const file = document.getElementById('sum-files').files[0]
      const hex = async blob => Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer())), b => b.toString(16).padStart(2, '0')).join('')
      const call = async (method, path, body) => {
        const res = await fetch('/sums' + path, { method, headers: { 'Content-Type': 'application/json' }, body: body && JSON.stringify(body) })
        return { status: res.status, body: res.status === 204 ? null : await res.json() }
      }
      const put = async (part, blob) => {
        const headers = Object.fromEntries(Object.entries(part.headers).filter(([k]) => k.toLowerCase() !== 'content-length'))
        const res = await fetch(part.url, { method: 'PUT', headers, body: blob })
        return { status: res.status, text: await res.text() }
      }
      const created = await call('POST', '/', { filename: file.name, size: file.size, type: 'application/octet-stream' })
      const id = created.body.id
      const part1 = file.slice(0, 5 * 1024 * 1024)
      const wrongSum = await hex(file.slice(5 * 1024 * 1024, 10 * 1024 * 1024))
      const wrong = await call('POST', `/${id}/parts`, { numbers: [1], sha256: [wrongSum] })
      const refused = await put(wrong.body.parts[0], part1)
      const listedAfterRefusal = (await call('GET', `/${id}/parts`)).body.parts.length
      // Positive control: the same bytes, signed with their own checksum.
      const right = await call('POST', `/${id}/parts`, { numbers: [1], sha256: [await hex(part1)] })
      const taken = await put(right.body.parts[0], part1)
      const listed = (await call('GET', `/${id}/parts`)).body.parts.map(p => p.number)
      await call('DELETE', `/${id}`)
      return { multipart: created.body.multipart, signed: wrong.status, refused, listedAfterRefusal, taken: taken.status, listed }
    })
    assert.deepEqual(out.multipart, { part_size: 5 * MiB, part_count: 3 })
    assert.equal(out.signed, 200)
    assert.equal(out.refused.status, 400, `storage answered ${out.refused.status} to a part with another checksum: ${out.refused.text}`)
    assert.match(out.refused.text, /<Code>(BadDigest|XAmzContentChecksumMismatch|InvalidDigest)<\/Code>/)
    assert.equal(out.listedAfterRefusal, 0, 'the refused part is stored')
    assert.equal(out.taken, 200)
    assert.deepEqual(out.listed, [1])
  } finally {
    await context.close()
  }
})
