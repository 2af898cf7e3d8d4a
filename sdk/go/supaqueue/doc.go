// Controlled calls to Supabase Edge Functions (queues, workers, rate limits, retries, pipelines), installed with Pulumi. The package version is the plugin's (GetSchema adds it).
package supaqueue
