// entroprune's Node API. The pipeline: load → capture → measure → plan → apply → save → evaluate.
export { loadModel, Model, type ModelInfo } from './load/model';
export { tokenizerFor, loadTokenizerFile, type Tokenizer } from './load/tokenizer';
export { perplexity, perplexityOfTokens, defaultSeqLen, type PerplexityOptions, type PerplexityResult } from './evaluate/perplexity';
export { analyze, analyzeToFile, modelIdentity, type AnalyzeOptions, type AnalyzeResult } from './measure/analyze';
export { readAnalysis, writeAnalysis, analysisSchema, type Analysis, type BlockStats, type LoadedAnalysis } from './measure/analysis';
export { sampleCalibration, calibrationStream, seededRandom, sameFile } from './measure/calibration';
export { plan, splitBudget, type PlanOptions, type WeightMagnitudes } from './plan/planner';
export { readPlan, writePlan, validatePlan, checkPlan, achievedRatio, prunedShapes, compensationBiases, planSchema, type PruningPlan, type BlockPlan, type PlanMethod } from './plan/plan';
export { waterFillRatios } from './plan/block-ratios';
export { kmeans1d, defaultK } from './plan/kmeans';
export { dfsSearch, greedySearch, type Candidate } from './plan/search';
export * as accounting from './plan/accounting';
export { applyPlan, defaultFormat, type ApplyOptions, type ApplyResult, type OutputFormat } from './apply/apply';
export { setThreads, cudaInfo, resolveDevice, type DeviceRequest } from './runtime';
export { EntropruneError, type EntropruneErrorCode } from './util/errors';
export { native, type SyntheticModelSpec, type CudaProbe } from './native';
export { VERSION } from './version';
