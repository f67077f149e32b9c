// Stock Uppy 6: Dashboard + @uppy/aws-s3 in Companion mode against the
// route's /s3 routes. Uppy sends no custom headers there: the token is a
// same-origin cookie.
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import AwsS3 from '@uppy/aws-s3'
import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'
import { confirmed, show } from './results.js'

const base = '/uploads'
const MiB = 1024 * 1024
const isMultipart = file => file.size > 6 * MiB

const uppy = new Uppy()
  .use(Dashboard, { inline: true, target: '#dashboard', height: 380, proudlyDisplayPoweredByUppy: false })
  .use(AwsS3, { companionEndpoint: base, shouldUseMultipart: isMultipart })

uppy.on('upload-success', async (file, response) => {
  try {
    show(file.name, await confirmed(base, {}, response, isMultipart(file)))
  } catch (err) {
    show(file.name, { error: err.message })
  }
})
uppy.on('upload-error', (file, err) => show(file.name, { error: err.message }))
window.uppy = uppy
