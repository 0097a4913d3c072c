# Runs ddpm-toy2d's conditional paths end to end on tiny sizes: train --conditional (and resume),
# sample --label --guidance (and a guidance sweep), train-classifier, sample --classifier (with a
# conditional and an unconditional model, and the exact classifier), eval per class, and the clear
# refusals (a class out of range or on an unconditional model, --conditional on swissroll).
include(${CMAKE_CURRENT_LIST_DIR}/smoke_helpers.cmake)

file(REMOVE_RECURSE ${OUT})
set(net --width 16 --depth 2 --embedding 8 --batch 32 --seed 3 --decay constant --warmup 0)
set(tiny ${net} --T 50)
set(few --n 40 --sample-steps 10)
run_ok(train --dataset 8gaussians --conditional --label-dropout 0.2 --steps 20 ${tiny} ${few}
       --checkpoint-every 10 --out ${OUT}/cond)
expect_files(${OUT}/cond model.ckpt loss.csv samples.csv samples.png)
expect_output(ARGS info ${OUT}/cond/model.ckpt OUTPUT_MATCHES "model.classes +8\n"
              "train.label_dropout +0.2")
# Without --label a conditional model draws the classes in turn; samples.csv has their labels.
file(STRINGS ${OUT}/cond/samples.csv lines)
list(GET lines 0 header)
list(GET lines 2 second)
if(NOT header STREQUAL "x,y,label" OR NOT second MATCHES ",1$")
  message(FATAL_ERROR "samples.csv of a conditional model: '${header}', second row '${second}'")
endif()
run_ok(train --dataset 8gaussians --conditional --label-dropout 0.2 --steps 25 ${tiny} ${few}
       --resume ${OUT}/cond/model.ckpt --out ${OUT}/resumed)
expect_refusal("model.classes: checkpoint 8, this run 0"
               train --dataset 8gaussians --steps 25 ${tiny} ${few} --resume ${OUT}/cond/model.ckpt
               --out ${OUT}/bad)

run_ok(sample --checkpoint ${OUT}/cond/model.ckpt --label 3 --guidance 2 --guidance-rescale 0.7 ${few}
       --guidance-sweep 0,3 --out ${OUT}/cfg)
expect_files(${OUT}/cfg samples.csv samples.png compare.png reverse.png guidance.png)

# The noisy-point classifier, then classifier guidance of both kinds of model.
run_ok(train-classifier --dataset 8gaussians --T 50 --width 16 --depth 2 --embedding 8 --steps 20
       --batch 32 --out ${OUT}/classifier)
expect_files(${OUT}/classifier classifier.ckpt)
run_ok(train --dataset 8gaussians --steps 10 ${tiny} ${few} --out ${OUT}/uncond)
foreach(model cond uncond)
  run_ok(sample --checkpoint ${OUT}/${model}/model.ckpt --label 5 ${few}
         --classifier ${OUT}/classifier/classifier.ckpt --classifier-scale 2 --out ${OUT}/cg_${model})
  expect_files(${OUT}/cg_${model} samples.csv samples.png)
endforeach()
run_ok(sample --checkpoint ${OUT}/uncond/model.ckpt --label 1 ${few} --exact --classifier exact
       --classifier-scale 1 --out ${OUT}/exact)

run_ok(eval --checkpoint ${OUT}/cond/model.ckpt --guidance 1 ${few} --bound-n 10 --out ${OUT}/eval)
expect_files(${OUT}/eval metrics.json classes.png)
file(READ ${OUT}/eval/metrics.json json)
string(JSON classes GET "${json}" conditional classes)
string(JSON share GET "${json}" conditional per_class 7 posterior_share)
string(JSON mmd GET "${json}" conditional per_class 0 mmd2)
if(NOT classes EQUAL 8 OR share LESS 0 OR share GREATER 1)
  message(FATAL_ERROR "eval's per-class section: ${classes} classes, share ${share}\n${json}")
endif()

# Clear refusals.
expect_refusal("--label = 8; allowed: .*7"
               sample --checkpoint ${OUT}/cond/model.ckpt --label 8 ${few} --out ${OUT}/bad)
expect_refusal("--label = 2; allowed: -1 \\(none\\) for an unconditional model"
               sample --checkpoint ${OUT}/uncond/model.ckpt --label 2 ${few} --out ${OUT}/bad)
expect_refusal("--conditional with --dataset = swissroll; allowed: 8gaussians .*moons .*circles"
               train --dataset swissroll --conditional --steps 2 ${tiny} ${few} --out ${OUT}/bad)
expect_refusal("--dataset = pinwheel; allowed: 8gaussians"
               train-classifier --dataset pinwheel --steps 2 --out ${OUT}/bad)
expect_refusal("--guidance = 1; allowed: 0 with --classifier"
               sample --checkpoint ${OUT}/cond/model.ckpt --label 1 --guidance 1 ${few}
               --classifier ${OUT}/classifier/classifier.ckpt --out ${OUT}/bad)
expect_refusal("is a diffusion model checkpoint, not a classifier of points"
               sample --checkpoint ${OUT}/cond/model.ckpt --label 1 ${few}
               --classifier ${OUT}/cond/model.ckpt --out ${OUT}/bad)
run_ok(train --dataset 8gaussians --steps 2 ${net} --T 40 ${few} --out ${OUT}/bad_T)
expect_refusal("learned the noise of a linear schedule of T = 50, the model's is linear of T = 40"
               sample --checkpoint ${OUT}/bad_T/model.ckpt --label 1 ${few}
               --classifier ${OUT}/classifier/classifier.ckpt --out ${OUT}/bad)
