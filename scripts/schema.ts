// Writes config/schema.json from the schema in src/config/schema.ts (npm run schema).
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { jsonSchema } from '../src/config/schema.js'

export const schemaPath = fileURLToPath(new URL('../../config/schema.json', import.meta.url))
export const schemaText = (): string => `${JSON.stringify(jsonSchema(), null, 2)}\n`

writeFileSync(schemaPath, schemaText())
process.stdout.write(`wrote ${schemaPath}\n`)
