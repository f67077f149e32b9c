// Download links served by the route (download_via link) in Chromium: an
// image route's inline link renders in a page, while an HTML upload is
// still saved as an attachment, never rendered as the site.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { deflateSync } from 'node:zlib'
import { Scratch, freePort, caddyBinary, bcryptHash, startCaddy, launchChromium, screenshot } from '../lib/harness.mjs'

const user = 'alice'
const password = 'links-' + Math.random().toString(36).slice(2)
const auth = 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64')

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
	# The links carry their own credential.
	@credentials not path_regexp /content$
	basic_auth @credentials {
		${user} ${hash}
	}
	handle_path /uploads/* {
		upload {
			download_via link {
				secret links-secret-0123456789
				inline image/png
			}
		}
	}
	handle {
		header Content-Type "text/html; charset=utf-8"
		respond "<!doctype html><title>site</title><h1>site</h1>" 200
	}
}`
  })
  browser = await launchChromium(scratch)
})

after(async () => {
  await scratch?.cleanup()
})

/** A w×h red PNG. */
function png (w, h) {
  const crc = buf => {
    let c = ~0
    for (const b of buf) { c ^= b; for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1 }
    return ~c >>> 0
  }
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length)
    out.writeUInt32BE(data.length, 0)
    out.write(type, 4, 'latin1')
    data.copy(out, 8)
    out.writeUInt32BE(crc(out.subarray(4, 8 + data.length)), 8 + data.length)
    return out
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(w * 3, Buffer.from([255, 0, 0]))])
  const raw = Buffer.concat(Array.from({ length: h }, () => row))
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))])
}

/** Uploads body through the API and returns the link its download redirects to. */
async function uploadAndLink (filename, type, body) {
  const api = async (method, path, json) => {
    const res = await fetch(`${caddy.url}/uploads${path}`, {
      method, redirect: 'manual', headers: { Authorization: auth, 'Content-Type': 'application/json' }, body: json && JSON.stringify(json)
    })
    return res
  }
  const created = await (await api('POST', '/', { filename, size: body.length, type })).json()
  const headers = Object.fromEntries(Object.entries(created.headers).filter(([k]) => k.toLowerCase() !== 'content-length'))
  const put = await fetch(created.url, { method: 'PUT', headers, body })
  assert.equal(put.status, 200, `PUT ${filename}`)
  assert.equal((await api('POST', `/${created.id}/complete`)).status, 200, `complete ${filename}`)
  const dl = await api('GET', `/${created.id}/download`)
  assert.equal(dl.status, 302)
  const loc = dl.headers.get('location')
  assert.match(loc, new RegExp(`^/uploads/${created.id}/content\\?exp=\\d+&sig=`))
  return caddy.url + loc
}

test('an inline image link renders in a page; an HTML upload is an attachment', async () => {
  const imageLink = await uploadAndLink('red.png', 'image/png', png(40, 30))
  const htmlLink = await uploadAndLink('evil.html', 'text/html', Buffer.from('<!doctype html><title>evil</title><h1 id=evil>rendered</h1>'))
  const context = await browser.newContext({ httpCredentials: { username: user, password } })
  const page = await context.newPage()
  try {
    await page.goto(caddy.url + '/')
    assert.equal(await page.title(), 'site')
    await page.evaluate(src => new Promise((resolve, reject) => {
      const img = document.createElement('img')
      img.id = 'shot'
      img.onload = resolve
      img.onerror = () => reject(new Error('the image did not load'))
      img.src = src
      document.body.append(img)
    }), imageLink)
    assert.deepEqual(await page.evaluate(() => [document.getElementById('shot').naturalWidth, document.getElementById('shot').naturalHeight]), [40, 30])
    await screenshot(page, 'inline-image-link')

    // Control for the attachment check: the page navigates to a plain URL.
    const downloads = []
    page.on('download', d => downloads.push(d))
    await assert.rejects(page.goto(htmlLink), /Download is starting|net::ERR_ABORTED/)
    await page.waitForEvent('download', { timeout: 10000 }).catch(() => {})
    assert.equal(downloads.length, 1, 'the HTML upload was not offered as a download')
    assert.equal(downloads[0].suggestedFilename(), 'evil.html')
    assert.equal(page.url(), caddy.url + '/', 'the page left the site for the HTML upload')
    assert.equal(await page.title(), 'site')
    assert.equal(await page.locator('#evil').count(), 0)
  } finally {
    await context.close()
  }
})
