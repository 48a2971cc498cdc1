import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'demo/public/**', 'test-artifacts/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // core/ is platform-free: no Node built-ins, no vendor SDKs, no adapters.
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['node:*', 'fs', 'path', 'os', 'net', 'http', 'child_process'], message: 'core/ is platform-free' },
          { group: ['@supabase/*', 'pg', 'react', 'ws', '@electric-sql/*'], message: 'core/ never imports a vendor SDK' },
          { group: ['../storage/*', '../backends/*', '../env/*', '../react/*', '../testing/*'], message: 'core/ never imports an adapter' },
        ],
      }],
    },
  },
)
